"""Payment's bootstrap: its settings, and the wiring of its parts into the service shell."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from services.payment import api, handlers
from shared.events import InventoryFailed, OrderCreated, ShippingFailed
from shared.faults import INFRASTRUCTURE_KINDS, FaultKind
from shared.platform import Platform
from shared.service import create_app
from shared.settings import PlatformSettings, database_url_field
from shared.subscriptions import Subscription

__all__ = ["PaymentSettings", "bootstrap"]


class PaymentSettings(PlatformSettings):
    service_name: str = "payment"
    database_url: str = database_url_field("payment")


def bootstrap(settings: PaymentSettings | None = None) -> FastAPI:
    """The payment service as an ASGI app; it connects when the app starts."""
    settings = settings or PaymentSettings()
    platform = Platform.configure(settings, INFRASTRUCTURE_KINDS | {FaultKind.decline})
    subscriptions = [
        Subscription.batched(OrderCreated, partial(handlers.charge, faults=platform.faults)),
        Subscription(InventoryFailed, handlers.refund),
        Subscription(ShippingFailed, handlers.refund),
    ]
    service = platform.service(
        migrations=Path(__file__).with_name("migrations"),
        consumers={"payment": subscriptions},
        admin_routers=[api.admin_router(platform.units)],
        description="Charges orders, refunds them when a later step fails.",
    )
    return create_app(service)
