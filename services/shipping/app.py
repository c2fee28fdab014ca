"""The shipping service, declared: its settings, consumers, routes and the faults it accepts."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.shipping import api, drills, handlers
from shared.declaration import Consumers, ServiceDeclaration
from shared.events import InventoryReserved, OrderCancelled
from shared.faults import FaultKind
from shared.platform import Platform
from shared.settings import PlatformSettings, database_url_field
from shared.subscriptions import Subscription

__all__ = ["ShippingSettings", "service"]


class ShippingSettings(PlatformSettings):
    service_name: str = "shipping"
    database_url: str = database_url_field("shipping")


def consumers(platform: Platform[ShippingSettings]) -> Consumers:
    decide = platform.business_fault(FaultKind.fail, handlers.ship_rule, drills.failed)
    return {
        "shipping": [
            Subscription.batched(InventoryReserved, partial(handlers.ship_order, decide=decide)),
            Subscription.batched(OrderCancelled, handlers.refuse_cancelled),
        ]
    }


service = ServiceDeclaration(
    name="shipping",
    settings=ShippingSettings,
    description="Ships orders whose stock is held, with a stable tracking id.",
    port=8003,
    migrations=Path(__file__).with_name("migrations"),
    business_faults=frozenset({FaultKind.fail}),
    consumers=consumers,
    admin_routers=lambda platform: [api.admin_router(platform.units)],
)
