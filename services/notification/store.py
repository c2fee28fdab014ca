"""Notification's tables and the queries its handlers, its deliverer and its route need."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    any_,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notification.model import NotificationStatus
from shared.publishing.retention import PurgeStatement
from shared.storage.sql import insert_unless_present

__all__ = [
    "NOTIFICATIONS_PURGE",
    "ORDER_CUSTOMERS_PURGE",
    "Attempt",
    "Delivery",
    "NewNotification",
    "Notification",
    "add_notifications",
    "assign_customers",
    "claim_due",
    "customers_of",
    "deliver_again",
    "find_notifications",
    "metadata",
    "notifications",
    "order_customers",
    "record_attempts",
    "remember_customers",
]

metadata = MetaData()

notifications = Table(
    "notifications",
    metadata,
    # The page key of GET /notifications: rising with each notification recorded.
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("event_id", Text, nullable=False, unique=True),
    Column("event_type", Text, nullable=False),
    Column("order_id", Text, nullable=False),
    Column("customer_id", Text, nullable=True),
    Column("text", Text, nullable=False),
    Column("details", JSONB, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("notifications_by_customer", "customer_id", "id"),
    Index("notifications_by_order", "order_id", "id"),
    # What the deliverer looks for on every pass: only the few rows still to deliver.
    Index(
        "notifications_due",
        "next_attempt_at",
        postgresql_where=text("status = 'pending'"),
    ),
    # What retention deletes, oldest first (NOTIFICATIONS_PURGE).
    Index(
        "notifications_finished",
        "created_at",
        postgresql_where=text("status IN ('delivered', 'recorded')"),
    ),
)

order_customers = Table(
    "order_customers",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("order_customers_created_at", "created_at"),
)

# A notification done with (delivered, or recorded without a webhook) once it is older than
# the window; a pending one is still to deliver and a dead one still to look at and send
# again, however old. Found through the partial index, deleted by ctid as the platform's
# purges are (shared.publishing.retention).
NOTIFICATIONS_PURGE = PurgeStatement(
    notifications.name,
    f"DELETE FROM {notifications.name} WHERE ctid = ANY(ARRAY("
    f"SELECT ctid FROM {notifications.name} "
    "WHERE status IN ('delivered', 'recorded') AND created_at < now() - $1::interval "
    "ORDER BY created_at LIMIT $2))",
)
# An order's customer is needed until its cancel is read, minutes after the order at most
# (its deadlines), or a backlog later: the same window is plenty.
ORDER_CUSTOMERS_PURGE = PurgeStatement(
    order_customers.name,
    f"DELETE FROM {order_customers.name} WHERE ctid = ANY(ARRAY("
    f"SELECT ctid FROM {order_customers.name} "
    "WHERE created_at < now() - $1::interval ORDER BY created_at LIMIT $2))",
)


@dataclass(frozen=True)
class NewNotification:
    event_id: str
    event_type: str
    order_id: str
    customer_id: str | None
    text: str
    details: Mapping[str, str]
    occurred_at: datetime
    status: NotificationStatus


@dataclass(frozen=True)
class Notification:
    id: int
    event_id: str
    event_type: str
    order_id: str
    customer_id: str | None
    text: str
    details: dict[str, str]
    occurred_at: datetime
    status: NotificationStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class Delivery:
    """A notification claimed for one delivery attempt (its ``attempts`` counts this one)."""

    id: int
    event_id: str
    attempts: int
    body: dict[str, Any]


_REMEMBER = insert_unless_present(
    order_customers, ("order_id", "customer_id"), conflict=("order_id",)
)
_ADD = insert_unless_present(
    notifications,
    (
        "event_id",
        "event_type",
        "order_id",
        "customer_id",
        "text",
        "details",
        "occurred_at",
        "status",
    ),
    conflict=("event_id",),
)
_ORDER_IDS = bindparam("order_ids", type_=ARRAY(Text))
_CUSTOMERS_OF = select(order_customers.c.order_id, order_customers.c.customer_id).where(
    order_customers.c.order_id == any_(_ORDER_IDS)
)


async def remember_customers(session: AsyncConnection, customers: Mapping[str, str]) -> None:
    """Remember each order's customer (``customers``: order id -> customer id)."""
    rows = [{"order_id": order, "customer_id": customer} for order, customer in customers.items()]
    if rows:
        await session.execute(_REMEMBER, rows)


async def customers_of(session: AsyncConnection, order_ids: Iterable[str]) -> dict[str, str]:
    """The customers known of ``order_ids``, by order id (an order not yet seen is missing)."""
    rows = await session.execute(_CUSTOMERS_OF, {"order_ids": sorted(set(order_ids))})
    return {order_id: customer_id for order_id, customer_id in rows}


async def add_notifications(session: AsyncConnection, new: Sequence[NewNotification]) -> None:
    """Record each of ``new`` unless its event already has a notification."""
    rows = [
        {
            "event_id": one.event_id,
            "event_type": one.event_type,
            "order_id": one.order_id,
            "customer_id": one.customer_id,
            "text": one.text,
            "details": dict(one.details),
            "occurred_at": one.occurred_at,
            "status": one.status.value,
        }
        for one in new
    ]
    if rows:
        await session.execute(_ADD, rows)


async def assign_customers(
    session: AsyncConnection, order_ids: Iterable[str], status: NotificationStatus
) -> None:
    """Give the notifications of ``order_ids`` that awaited their customer that customer (as
    remembered) and ``status``."""
    await session.execute(
        update(notifications)
        .where(
            notifications.c.order_id == order_customers.c.order_id,
            notifications.c.order_id == any_(_ORDER_IDS),
            notifications.c.status == NotificationStatus.AWAITING_CUSTOMER.value,
        )
        .values(
            customer_id=order_customers.c.customer_id,
            status=status.value,
            next_attempt_at=func.now(),
        ),
        {"order_ids": sorted(set(order_ids))},
    )


async def claim_due(session: AsyncConnection, *, limit: int, lease: timedelta) -> list[Delivery]:
    """Take up to ``limit`` notifications due for delivery, counting the attempt now and
    putting the next one ``lease`` ahead: a deliverer that dies mid-attempt leaves its
    notifications to be tried again once the lease is over, and the rows it took are not
    locked while it waits for the webhook. ``SKIP LOCKED``: two deliverers take two sets."""
    due = (
        select(notifications.c.id)
        .where(
            notifications.c.status == NotificationStatus.PENDING.value,
            notifications.c.next_attempt_at <= func.now(),
        )
        .order_by(notifications.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(notifications)
        .where(notifications.c.id.in_(due.scalar_subquery()))
        .values(attempts=notifications.c.attempts + 1, next_attempt_at=func.now() + lease)
        .returning(*notifications.c)
    )
    rows = (await session.execute(claim)).mappings().all()
    return [Delivery(row["id"], row["event_id"], row["attempts"], _body(row)) for row in rows]


@dataclass(frozen=True)
class Attempt:
    """The outcome of one delivery attempt, as the deliverer records it."""

    delivery: Delivery
    status: NotificationStatus
    retry_in: timedelta
    error: str | None


_RECORD_ATTEMPTS = text(
    f"UPDATE {notifications.name} AS n SET status = o.status, last_error = o.error, "
    "next_attempt_at = now() + make_interval(secs => o.retry_s), "
    "delivered_at = CASE WHEN o.status = :delivered THEN now() END "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[]), "
    "CAST(:statuses AS text[]), CAST(:errors AS text[]), CAST(:retry_s AS float8[])) "
    "AS o(id, attempts, status, error, retry_s) "
    "WHERE n.id = o.id AND n.attempts = o.attempts AND n.status = :pending"
)


async def record_attempts(session: AsyncConnection, attempts: Sequence[Attempt]) -> int:
    """The outcomes of ``attempts``, in one statement; how many were recorded. An attempt
    whose notification moved on meanwhile (its lease ran out and another attempt took it)
    is not: that attempt records its own."""
    if not attempts:
        return 0
    values = {
        "ids": [a.delivery.id for a in attempts],
        "attempts": [a.delivery.attempts for a in attempts],
        "statuses": [a.status.value for a in attempts],
        "errors": [a.error for a in attempts],
        "retry_s": [a.retry_in.total_seconds() for a in attempts],
        "delivered": NotificationStatus.DELIVERED.value,
        "pending": NotificationStatus.PENDING.value,
    }
    return (await session.execute(_RECORD_ATTEMPTS, values)).rowcount


async def deliver_again(session: AsyncConnection, event_id: str) -> NotificationStatus | None:
    """A dead notification back to ``PENDING`` with its attempts counted from 0 again; returns
    the status it had (``DEAD`` when it was sent back), None when there is none."""
    revive = (
        update(notifications)
        .where(
            notifications.c.event_id == event_id,
            notifications.c.status == NotificationStatus.DEAD.value,
        )
        .values(
            status=NotificationStatus.PENDING.value,
            attempts=0,
            next_attempt_at=func.now(),
            last_error=None,
        )
    )
    if (await session.execute(revive)).rowcount == 1:
        return NotificationStatus.DEAD
    found = await session.scalar(
        select(notifications.c.status).where(notifications.c.event_id == event_id)
    )
    return None if found is None else NotificationStatus(found)


async def find_notifications(
    session: AsyncConnection,
    *,
    customer_id: str | None,
    order_id: str | None,
    limit: int,
    after: int | None,
) -> list[Notification]:
    """The notifications of a customer and/or an order, newest first, at most ``limit``; with
    ``after`` (an id), those that come after it in this order (the next page)."""
    conditions = []
    if customer_id is not None:
        conditions.append(notifications.c.customer_id == customer_id)
    if order_id is not None:
        conditions.append(notifications.c.order_id == order_id)
    if after is not None:
        conditions.append(notifications.c.id < after)
    query = select(notifications).where(*conditions).order_by(notifications.c.id.desc())
    rows = (await session.execute(query.limit(limit))).mappings()
    return [_notification(row) for row in rows]


def _body(row: RowMapping) -> dict[str, Any]:
    """What the webhook receives: the notification, as the customer's channel needs it."""
    return {
        "notification_id": row["event_id"],
        "event_type": row["event_type"],
        "order_id": row["order_id"],
        "customer_id": row["customer_id"],
        "text": row["text"],
        "details": row["details"],
        "occurred_at": row["occurred_at"].isoformat(),
    }


def _notification(row: RowMapping) -> Notification:
    return Notification(
        id=row["id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        text=row["text"],
        details=row["details"],
        occurred_at=row["occurred_at"],
        status=NotificationStatus(row["status"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )
