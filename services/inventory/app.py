"""The inventory service, declared: its settings, consumers, routes and the faults it accepts."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.events import CATALOGUE, OrderShipped, PaymentProcessed, ShippingFailed
from services.inventory import api, drills, handlers
from shared.app.declaration import Consumers, ServiceDeclaration
from shared.app.platform import Platform
from shared.consuming.subscriptions import Subscription
from shared.settings import PlatformSettings, database_url_field

__all__ = ["InventorySettings", "service"]


class InventorySettings(PlatformSettings):
    service_name: str = "inventory"
    database_url: str = database_url_field("inventory")


def consumers(platform: Platform[InventorySettings]) -> Consumers:
    decide = platform.business_fault(
        drills.OUT_OF_STOCK, handlers.reserve_rule, drills.out_of_stock
    )
    return {
        "inventory": [
            Subscription.batched(PaymentProcessed, partial(handlers.reserve_stock, decide=decide)),
            Subscription.batched(OrderShipped, handlers.ship_stock),
            Subscription.batched(ShippingFailed, handlers.release_stock),
        ]
    }


service = ServiceDeclaration(
    name="inventory",
    settings=InventorySettings,
    description="Holds stock for paid orders, ships it or gives it back.",
    port=8002,
    migrations=Path(__file__).with_name("migrations"),
    catalogue=CATALOGUE,
    business_faults=frozenset({drills.OUT_OF_STOCK}),
    consumers=consumers,
    admin_routers=lambda platform: [api.admin_router(platform.units)],
)
