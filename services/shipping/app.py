"""Shipping's bootstrap: its settings, and the wiring of its parts into the service shell."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from fastapi import FastAPI

from services.shipping import api, handlers
from shared.events import InventoryReserved, OrderCancelled
from shared.faults import INFRASTRUCTURE_KINDS, FaultKind
from shared.platform import Platform
from shared.service import create_app
from shared.settings import PlatformSettings, database_url_field
from shared.subscriptions import Subscription

__all__ = ["ShippingSettings", "bootstrap"]


class ShippingSettings(PlatformSettings):
    service_name: str = "shipping"
    database_url: str = database_url_field("shipping")


def bootstrap(settings: ShippingSettings | None = None) -> FastAPI:
    """The shipping service as an ASGI app; it connects when the app starts."""
    settings = settings or ShippingSettings()
    platform = Platform.configure(settings, INFRASTRUCTURE_KINDS | {FaultKind.fail})
    subscriptions = [
        Subscription.batched(
            InventoryReserved, partial(handlers.ship_order, faults=platform.faults)
        ),
        Subscription.batched(OrderCancelled, handlers.refuse_cancelled),
    ]
    service = platform.service(
        migrations=Path(__file__).with_name("migrations"),
        consumers={"shipping": subscriptions},
        admin_routers=[api.admin_router(platform.units)],
        description="Ships orders whose stock is held, with a stable tracking id.",
    )
    return create_app(service)
