"""Inventory's bootstrap: its settings, and the wiring of its parts into the service shell."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from services.inventory import api, handlers
from shared.events import OrderShipped, PaymentProcessed, ShippingFailed
from shared.faults import INFRASTRUCTURE_KINDS, FaultKind
from shared.platform import Platform
from shared.service import create_app
from shared.settings import PlatformSettings, database_url_field
from shared.subscriptions import Subscription

__all__ = ["InventorySettings", "bootstrap"]


class InventorySettings(PlatformSettings):
    service_name: str = "inventory"
    database_url: str = database_url_field("inventory")


def bootstrap(settings: InventorySettings | None = None) -> FastAPI:
    """The inventory service as an ASGI app; it connects when the app starts."""
    settings = settings or InventorySettings()
    platform = Platform.configure(settings, INFRASTRUCTURE_KINDS | {FaultKind.out_of_stock})
    subscriptions = [
        Subscription.batched(
            PaymentProcessed, partial(handlers.reserve_stock, faults=platform.faults)
        ),
        Subscription.batched(OrderShipped, handlers.ship_stock),
        Subscription.batched(ShippingFailed, handlers.release_stock),
    ]
    service = platform.service(
        migrations=Path(__file__).with_name("migrations"),
        consumers={"inventory": subscriptions},
        admin_routers=[api.admin_router(platform.units)],
        description="Holds stock for paid orders, ships it or gives it back.",
    )
    return create_app(service)
