"""The payment service, declared: its settings, consumers, routes and the faults it accepts."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from services.events import CATALOGUE, InventoryFailed, OrderCreated, ShippingFailed
from services.payment import api, drills, handlers
from shared.app.declaration import Consumers, ServiceDeclaration
from shared.app.platform import Platform
from shared.consuming.subscriptions import Subscription
from shared.settings import PlatformSettings, database_url_field

__all__ = ["PaymentSettings", "service"]


class PaymentSettings(PlatformSettings):
    service_name: str = "payment"
    database_url: str = database_url_field("payment")


def consumers(platform: Platform[PaymentSettings]) -> Consumers:
    decide = platform.business_fault(drills.DECLINE, handlers.charge_rule, drills.declined)
    return {
        "payment": [
            Subscription.batched(OrderCreated, partial(handlers.charge, decide=decide)),
            Subscription(InventoryFailed, handlers.refund),
            Subscription(ShippingFailed, handlers.refund),
        ]
    }


service = ServiceDeclaration(
    name="payment",
    settings=PaymentSettings,
    description="Charges orders, refunds them when a later step fails.",
    port=8001,
    migrations=Path(__file__).with_name("migrations"),
    catalogue=CATALOGUE,
    business_faults=frozenset({drills.DECLINE}),
    consumers=consumers,
    admin_routers=lambda platform: [api.admin_router(platform.units)],
)
