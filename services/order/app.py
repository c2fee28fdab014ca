"""The order service, declared: its settings (saga deadlines among them), consumers, routes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from services.order import api, handlers
from services.order.deadlines import Deadlines
from services.order.sweeper import DeadlineSweeper
from shared.declaration import Consumers, ServiceDeclaration
from shared.events import CATALOGUE
from shared.platform import Platform
from shared.settings import PlatformSettings, database_url_field
from shared.subscriptions import Subscription

__all__ = ["OrderSettings", "service"]


class OrderSettings(PlatformSettings):
    service_name: str = "order"
    database_url: str = database_url_field("order")
    deadline_pending_seconds: float = Field(default=30.0, gt=0)
    """SAGAKIT_DEADLINE_PENDING_SECONDS: how long a saga may wait to be paid."""
    deadline_paid_seconds: float = Field(default=60.0, gt=0)
    """SAGAKIT_DEADLINE_PAID_SECONDS: how long a paid saga may wait for its stock."""
    deadline_reserved_seconds: float = Field(default=300.0, gt=0)
    """SAGAKIT_DEADLINE_RESERVED_SECONDS: how long a reserved saga may wait to ship."""
    deadline_sweep_interval_seconds: float = Field(default=5.0, gt=0)
    """SAGAKIT_DEADLINE_SWEEP_INTERVAL_SECONDS: how often the sweeper cancels overdue sagas."""

    def deadlines(self) -> Deadlines:
        """The deadlines these settings give each non-terminal status."""
        return Deadlines(
            pending=timedelta(seconds=self.deadline_pending_seconds),
            paid=timedelta(seconds=self.deadline_paid_seconds),
            reserved=timedelta(seconds=self.deadline_reserved_seconds),
        )


def consumers(platform: Platform[OrderSettings]) -> Consumers:
    saga = [Subscription.batched(outcome, handlers.advance_sagas) for outcome in handlers.OUTCOMES]
    # A second consumer group reads every topic for the timeline: pub/sub next to the
    # saga's own group, and a read model kept apart from the write side (CQRS).
    timeline = [
        Subscription.batched(event_type, handlers.record_in_timeline) for event_type in CATALOGUE
    ]
    return {"order": saga, "order-timeline": timeline}


def sweeper(platform: Platform[OrderSettings]) -> DeadlineSweeper:
    settings = platform.settings
    return DeadlineSweeper(
        platform.units,
        settings.database_url,
        settings.deadlines(),
        interval_s=settings.deadline_sweep_interval_seconds,
    )


service = ServiceDeclaration(
    name="order",
    settings=OrderSettings,
    description="Takes orders and follows each order's saga to its end.",
    port=8000,
    migrations=Path(__file__).with_name("migrations"),
    consumers=consumers,
    routers=lambda platform: [api.router(platform.units)],
    components=lambda platform: [sweeper(platform), api.SagaCounts(platform.units)],
)
