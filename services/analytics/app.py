"""The analytics service, declared: one consumer group on every topic of the catalogue."""

from __future__ import annotations

from pathlib import Path

from services.analytics import api, handlers
from services.events import CATALOGUE, OrderCancelled, OrderCompleted, OrderCreated
from shared.app.declaration import ServiceDeclaration
from shared.consuming.subscriptions import Subscription
from shared.settings import ListenerSettings, database_url_field

__all__ = ["GROUP", "AnalyticsSettings", "service"]

GROUP = "analytics"
"""Its consumer group (after SAGAKIT_TOPIC_PREFIX): what ``sagakit analytics rebuild`` resets."""

# Every event is counted first (its row in events_per_minute), then the order's facts move.
counted = [Subscription.batched(event_type, handlers.count_events) for event_type in CATALOGUE]


class AnalyticsSettings(ListenerSettings):
    service_name: str = "analytics"
    database_url: str = database_url_field("analytics")


service: ServiceDeclaration[AnalyticsSettings] = ServiceDeclaration(
    name="analytics",
    settings=AnalyticsSettings,
    description="A read model of the orders: rates, revenue, outcomes and saga durations.",
    port=8005,
    migrations=Path(__file__).with_name("migrations"),
    catalogue=CATALOGUE,
    consumers={
        GROUP: [
            *counted,
            Subscription.batched(OrderCreated, handlers.record_created),
            Subscription.batched(OrderCompleted, handlers.record_completed),
            Subscription.batched(OrderCancelled, handlers.record_cancelled),
        ]
    },
    routers=lambda platform: [api.router(platform.units)],
)
