"""Order's bootstrap: its settings, and the wiring of its parts into the service shell."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.order import api, handlers
from shared.events import CATALOGUE
from shared.faults import INFRASTRUCTURE_KINDS
from shared.platform import Platform
from shared.service import create_app
from shared.settings import PlatformSettings, database_url_field
from shared.subscriptions import Subscription

__all__ = ["OrderSettings", "bootstrap"]


class OrderSettings(PlatformSettings):
    service_name: str = "order"
    database_url: str = database_url_field("order")


def bootstrap(settings: OrderSettings | None = None) -> FastAPI:
    """The order service as an ASGI app; it connects when the app starts."""
    settings = settings or OrderSettings()
    platform = Platform.configure(settings, INFRASTRUCTURE_KINDS)
    saga = [Subscription.batched(outcome, handlers.advance_sagas) for outcome in handlers.OUTCOMES]
    # A second consumer group reads every topic for the timeline: pub/sub next to the
    # saga's own group, and a read model kept apart from the write side (CQRS).
    timeline = [
        Subscription.batched(event_type, handlers.record_in_timeline) for event_type in CATALOGUE
    ]
    service = platform.service(
        migrations=Path(__file__).with_name("migrations"),
        consumers={"order": saga, "order-timeline": timeline},
        routers=[api.router(platform.units)],
        description="Takes orders and follows each order's saga to its end.",
        components=[api.SagaCounts(platform.units)],
    )
    return create_app(service)
