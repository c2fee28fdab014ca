"""The shipping service, declared: its settings, consumers, routes and the faults it accepts."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.events import CATALOGUE, InventoryReserved, OrderCancelled
from services.shipping import api, drills, handlers
from shared.app.declaration import Consumers, ServiceDeclaration
from shared.app.platform import Platform
from shared.consuming.subscriptions import Subscription
from shared.settings import PlatformSettings, database_url_field

__all__ = ["ShippingSettings", "service"]


class ShippingSettings(PlatformSettings):
    service_name: str = "shipping"
    database_url: str = database_url_field("shipping")


def consumers(platform: Platform[ShippingSettings]) -> Consumers:
    decide = platform.business_fault(drills.FAIL, handlers.ship_rule, drills.failed)
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
    catalogue=CATALOGUE,
    business_faults=frozenset({drills.FAIL}),
    consumers=consumers,
    admin_routers=lambda platform: [api.admin_router(platform.units)],
)
