"""The order service, declared: its settings (saga deadlines among them), consumers, routes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi import APIRouter
from pydantic import Field
from starlette.middleware import Middleware

from services.events import CATALOGUE
from services.order import api, bulk_api, handlers, store
from services.order.admission import Admission, AdmissionGate, outbox_backlog
from services.order.bulk import BulkRunner
from services.order.dead_letter_rows import DeadLetterRows
from services.order.deadlines import Deadlines
from services.order.explorer import routes as explorer
from services.order.explorer.peers import Peers
from services.order.stuck import StuckFinder
from services.order.sweeper import DeadlineSweeper
from shared.app.declaration import Consumers, ServiceDeclaration
from shared.app.platform import Platform
from shared.consuming.horizon import ReadHorizon
from shared.consuming.subscriptions import Subscription
from shared.contracts.topics import Topics
from shared.ops.dead_letter_index import DeadLetterIndex
from shared.publishing.audit import AuditTrail
from shared.publishing.purger import Purge
from shared.settings import PlatformSettings, database_url_field, kafka_client_options

__all__ = ["OrderSettings", "service"]

GROUP = "order"
"""The order service's one consumer group (every topic): the sweeper decides as of what it read."""


class OrderSettings(PlatformSettings):
    service_name: str = "order"
    database_url: str = database_url_field("order")
    deadline_pending_seconds: float = Field(default=30.0, gt=0)
    """SAGAKIT_DEADLINE_PENDING_SECONDS: how long a saga may wait to be paid."""
    deadline_paid_seconds: float = Field(default=60.0, gt=0)
    """SAGAKIT_DEADLINE_PAID_SECONDS: how long a paid saga may wait for its stock."""
    deadline_reserved_seconds: float = Field(default=300.0, gt=0)
    """SAGAKIT_DEADLINE_RESERVED_SECONDS: how long a reserved saga may wait to ship."""
    deadline_compensation_seconds: float = Field(default=60.0, gt=0)
    """SAGAKIT_DEADLINE_COMPENSATION_SECONDS: how long a timed-out saga may wait, without a
    move, for its compensations before it is listed as stuck."""
    deadline_sweep_interval_seconds: float = Field(default=5.0, gt=0)
    """SAGAKIT_DEADLINE_SWEEP_INTERVAL_SECONDS: how often the sweeper cancels overdue sagas."""

    max_in_flight_orders: int = Field(default=64, ge=1)
    """SAGAKIT_MAX_IN_FLIGHT_ORDERS: POST /orders handled at once per instance; past it, 503."""
    max_outbox_backlog_rows: int = Field(default=50_000, ge=1)
    """SAGAKIT_MAX_OUTBOX_BACKLOG_ROWS: unsent outbox rows past which POST /orders answers 503."""
    max_outbox_backlog_age_seconds: float = Field(default=10.0, gt=0)
    """SAGAKIT_MAX_OUTBOX_BACKLOG_AGE_SECONDS: age of the oldest unsent outbox row past which
    POST /orders answers 503."""

    # The other services, for the explorer's view of an order (unset: shown as such).
    payment_url: str | None = None
    """SAGAKIT_PAYMENT_URL: payment's base URL."""
    inventory_url: str | None = None
    """SAGAKIT_INVENTORY_URL: inventory's base URL."""
    shipping_url: str | None = None
    """SAGAKIT_SHIPPING_URL: shipping's base URL."""

    timeline_retention_seconds: int | None = Field(default=None, ge=1)
    """SAGAKIT_TIMELINE_RETENTION_SECONDS: an order finished longer ago loses the events of its
    timeline older than this; unset (the default) keeps every timeline for ever. Off by
    default because the timeline is the only history a user and the explorer see of an
    order: how long to keep it is the operator's decision (docs/operations.md)."""

    bulk_rate_per_second: float = Field(default=100.0, gt=0)
    """SAGAKIT_BULK_RATE_PER_SECOND: items of a bulk action (dead letters replayed, sagas
    cancelled) done per second at most (one instance works an action at a time), so a large
    one does not flood the services."""
    bulk_batch_size: int = Field(default=100, ge=1)
    """SAGAKIT_BULK_BATCH_SIZE: items of a bulk action done per transaction."""

    def deadlines(self) -> Deadlines:
        """The deadlines these settings give each non-terminal status."""
        return Deadlines(
            pending=timedelta(seconds=self.deadline_pending_seconds),
            paid=timedelta(seconds=self.deadline_paid_seconds),
            reserved=timedelta(seconds=self.deadline_reserved_seconds),
            compensation=timedelta(seconds=self.deadline_compensation_seconds),
        )


def consumers(platform: Platform[OrderSettings]) -> Consumers:
    # One group reads every topic: each event goes into its order's timeline, and an outcome
    # moves its saga in the same transaction. A second group for the timeline (as until
    # 2026-12) read the three outcome topics twice and ran a second stream of transactions:
    # 8 records and two transactions per saga where 5 and one do (bench/README.md).
    saga = [Subscription.batched(outcome, handlers.advance_sagas) for outcome in handlers.OUTCOMES]
    timeline = [
        Subscription.batched(event_type, handlers.record_in_timeline) for event_type in CATALOGUE
    ]
    return {GROUP: [*saga, *timeline]}


def purges(platform: Platform[OrderSettings]) -> list[Purge]:
    """The timeline's retention, when set, run by the platform's purger with the outbox's."""
    seconds = platform.settings.timeline_retention_seconds
    if seconds is None:
        return []
    return [Purge(store.TIMELINE_PURGE, timedelta(seconds=seconds))]


def sweeper(platform: Platform[OrderSettings]) -> DeadlineSweeper:
    settings = platform.settings
    horizon = ReadHorizon(
        kafka_client_options(settings),
        f"{settings.topic_prefix}{GROUP}",  # as the platform names the group
        platform.topics.all(include_dlq=False),
    )
    return DeadlineSweeper(
        platform.units,
        settings.database_url,
        settings.deadlines(),
        interval_s=settings.deadline_sweep_interval_seconds,
        horizon=horizon,
    )


def saga_explorer(platform: Platform[OrderSettings]) -> explorer.Explorer:
    """The explorer's parts: one per process, shared by its routes and the order API's
    ``stuck`` filter."""
    settings = platform.settings
    kafka = kafka_client_options(settings)
    dlq_topics = [Topics.dlq(topic) for topic in platform.topics.all(include_dlq=False)]
    dead_letters = DeadLetterIndex(kafka, dlq_topics, DeadLetterRows(platform.units), CATALOGUE)
    urls = {
        "payment": settings.payment_url,
        "inventory": settings.inventory_url,
        "shipping": settings.shipping_url,
    }
    return explorer.Explorer(
        units=platform.units,
        finder=StuckFinder(settings.deadlines(), dead_letters),
        dead_letters=dead_letters,
        peers=Peers(urls, settings.admin_token),
        kafka_options=kafka,
        inbox_memory=settings.inbox_retention(),
        group_prefix=settings.topic_prefix,
        audit=AuditTrail(settings, f"{settings.service_name}/{settings.instance_id}"),
    )


def bulk_runner(platform: Platform[OrderSettings]) -> BulkRunner:
    settings = platform.settings
    return BulkRunner(
        platform.units,
        kafka_client_options(settings),
        settings.inbox_retention(),
        settings.deadlines(),
        rate_per_s=settings.bulk_rate_per_second,
        batch_size=settings.bulk_batch_size,
    )


def admission(platform: Platform[OrderSettings]) -> Admission:
    """The bounds of POST /orders: one per process, shared by the route and the components."""
    settings = platform.settings
    return Admission(
        settings.max_in_flight_orders,
        outbox_backlog(platform.engine),
        max_backlog_rows=settings.max_outbox_backlog_rows,
        max_backlog_age_s=settings.max_outbox_backlog_age_seconds,
    )


def routers(platform: Platform[OrderSettings]) -> list[APIRouter]:
    ui = platform.once(saga_explorer)
    return [
        api.router(platform.units, ui.finder),
        explorer.router(ui),
    ]


service = ServiceDeclaration(
    name="order",
    settings=OrderSettings,
    description="Takes orders and follows each order's saga to its end.",
    port=8000,
    migrations=Path(__file__).with_name("migrations"),
    catalogue=CATALOGUE,
    consumers=consumers,
    routers=routers,
    middleware=lambda platform: [Middleware(AdmissionGate, admission=platform.once(admission))],
    admin_routers=lambda platform: [
        explorer.admin_router(platform.once(saga_explorer)),
        bulk_api.router(platform.once(saga_explorer)),
    ],
    components=lambda platform: [
        platform.once(admission),
        sweeper(platform),
        bulk_runner(platform),
        api.SagaCounts(platform.units, platform.settings.deadlines()),
    ],
    purges=purges,
)
