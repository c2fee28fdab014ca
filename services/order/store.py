"""Order's tables: the orders with their saga state, the timeline read model, and where
the dead letters of each order are (the dead-letter index's rows)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ColumnElement,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.events import OrderCreated, OrderEvent
from services.order.deadlines import Deadlines
from services.order.model import CancelReason, OrderStatus, Saga, SagaFact
from services.order.stuck import StuckCriteria
from shared.publishing.retention import PurgeStatement
from shared.storage.db import ReadFrom, UnitOfWorkFactory
from shared.storage.sql import insert_unless_present

__all__ = [
    "TIMELINE_PURGE",
    "Order",
    "OrderQuery",
    "TimelineEntry",
    "bulk_action_items",
    "bulk_actions",
    "dead_letter_index",
    "metadata",
    "orders",
    "timeline",
]

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("items", JSONB, nullable=False),
    Column("total", Numeric(18, 2), nullable=False),
    Column("status", Text, nullable=False),
    Column("cancel_reason", Text, nullable=True),
    Column("facts", ARRAY(Text), nullable=False, server_default="{}"),
    Column("idempotency_key", Text, nullable=True, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A timed-out saga whose compensations are not all confirmed yet (kept by save_sagas
    # from ``Saga.outstanding_compensations``): the stuck listing reads it through the
    # partial index below instead of every cancelled order.
    Column("awaiting_compensation", Boolean, nullable=False, server_default=false()),
)
Index("orders_recent", orders.c.created_at.desc())
Index(
    "orders_awaiting_compensation",
    orders.c.updated_at,
    postgresql_where=orders.c.awaiting_compensation,
)
# The waiting sagas by status and since when: the deadline sweeper reads one range of it per
# non-terminal status (migration 0002).
Index("orders_waiting", orders.c.status, orders.c.updated_at)

timeline = Table(
    "timeline",
    metadata,
    Column("seq", BigInteger, Identity(), primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("order_id", Text, nullable=False, index=True),
    Column("event_type", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("producer", Text, nullable=False),
    Column("causation_id", Uuid, nullable=True),
    Column("payload", JSONB, nullable=False),
    # Where the timeline's consumer read the event (null for events recorded before 0002).
    Column("kafka_topic", Text, nullable=True),
    Column("kafka_partition", Integer, nullable=True),
    Column("kafka_offset", BigInteger, nullable=True),
)
# Retention reads the oldest events first (migration 0008; TIMELINE_PURGE).
Index("timeline_occurred_at", timeline.c.occurred_at)

_TERMINAL = ", ".join(f"'{status.value}'" for status in OrderStatus if status.is_terminal)
TIMELINE_PURGE = PurgeStatement(
    timeline.name,
    # A finished order's history, once the order has been finished for the whole window: the
    # events older than the window, of orders terminal since before it. A waiting saga keeps
    # its whole timeline, however old (it is what an operator reads to unstick it), and so
    # does a timed-out one still awaiting a compensation (it is stuck). Found through the
    # occurred_at index, so a pass reads the expired range, not the table.
    "DELETE FROM timeline WHERE ctid = ANY(ARRAY("
    "SELECT t.ctid FROM timeline t JOIN orders o ON o.order_id = t.order_id "
    "WHERE t.occurred_at < now() - $1::interval "
    f"AND o.status IN ({_TERMINAL}) AND NOT o.awaiting_compensation "
    "AND o.updated_at < now() - $1::interval "
    "ORDER BY t.occurred_at LIMIT $2))",
)
"""The timeline's retention rule (``SAGAKIT_TIMELINE_RETENTION_SECONDS``,
``shared.publishing.purger``)."""

# One row per record of a dead-letter topic, written by the dead-letter index's reader
# (shared.ops.dead_letter_index): the stuck listing joins it instead of holding every
# dead-lettered order id in memory, and a replay seeks to the position it gives.
dead_letter_index = Table(
    "dead_letter_index",
    metadata,
    Column("topic", Text, primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("kafka_offset", BigInteger, primary_key=True),
    Column("order_id", Text, nullable=True, index=True),
    Column("dead_lettered_at", DateTime(timezone=True), nullable=False),
    # Its dlq.consumer.group and dlq.error.type (migration 0009): the groups of dead letters.
    Column("consumer_group", Text, nullable=True),
    Column("error_type", Text, nullable=True),
)
Index(
    "dead_letter_groups",
    dead_letter_index.c.topic,
    dead_letter_index.c.consumer_group,
    dead_letter_index.c.error_type,
    dead_letter_index.c.dead_lettered_at,
)

# The moment as of which sagas are judged stuck: the deadline sweeper's last read horizon
# (services.order.sweeper), one row. Past it the order group may not have read the outcomes
# yet, so a saga overdue by the clock alone is not shown as stuck, nor cancelled in bulk.
deadline_clock = Table(
    "deadline_clock",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column("as_of", DateTime(timezone=True), nullable=False),
    CheckConstraint("id", name="deadline_clock_one_row"),
)

# A bulk replay or bulk cancel an operator started (services.order.bulk), and the items it
# selected then, each with its outcome once done (null: to do): what makes it resumable.
bulk_actions = Table(
    "bulk_actions",
    metadata,
    Column("action_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("selection", JSONB, nullable=False),
    Column("total", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)
bulk_action_items = Table(
    "bulk_action_items",
    metadata,
    Column("action_id", Text, ForeignKey("bulk_actions.action_id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("order_id", Text, nullable=True),
    Column("topic", Text, nullable=True),
    Column("kafka_partition", Integer, nullable=True),
    Column("kafka_offset", BigInteger, nullable=True),
    Column("outcome", Text, nullable=True),
)
Index(
    "bulk_action_items_pending",
    bulk_action_items.c.action_id,
    bulk_action_items.c.seq,
    postgresql_where=bulk_action_items.c.outcome.is_(None),
)
# A dead letter a bulk replay sent is not selected again (services.order.bulk).
Index(
    "bulk_action_items_position",
    bulk_action_items.c.topic,
    bulk_action_items.c.kafka_partition,
    bulk_action_items.c.kafka_offset,
)


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    items: list[dict[str, Any]]
    total: Decimal
    status: OrderStatus
    cancel_reason: CancelReason | None
    facts: frozenset[SagaFact]
    created_at: datetime
    updated_at: datetime

    @property
    def saga(self) -> Saga:
        return Saga(self.status, self.cancel_reason, self.facts)


def _order(row: Any) -> Order:
    reason = row["cancel_reason"]
    return Order(
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        items=row["items"],
        total=row["total"],
        status=OrderStatus(row["status"]),
        cancel_reason=CancelReason(reason) if reason else None,
        facts=frozenset(SagaFact(fact) for fact in row["facts"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_ORDER_COLUMNS = ("order_id", "customer_id", "items", "total", "status", "idempotency_key")
_ADD_ORDER = insert_unless_present(
    orders, _ORDER_COLUMNS, conflict=["idempotency_key"], returning=[c.name for c in orders.c]
)
_TIMELINE_COLUMNS = (
    "event_id",
    "order_id",
    "event_type",
    "occurred_at",
    "producer",
    "causation_id",
    "payload",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
)
_ADD_TO_TIMELINE = insert_unless_present(timeline, _TIMELINE_COLUMNS, conflict=["event_id"])


async def add_order(
    session: AsyncConnection,
    *,
    order_id: str,
    customer_id: str,
    items: list[dict[str, Any]],
    total: Decimal,
    idempotency_key: str | None,
) -> Order | None:
    """Insert a new order; None when an order with this idempotency key already exists."""
    values = {
        "order_id": order_id,
        "customer_id": customer_id,
        "items": items,
        "total": total,
        "status": OrderStatus.PENDING.value,
        "idempotency_key": idempotency_key,
    }
    row = (await session.execute(_ADD_ORDER, values)).mappings().one_or_none()
    return _order(row) if row else None


async def place_order(
    units: UnitOfWorkFactory, created: OrderCreated, idempotency_key: str | None
) -> Order | None:
    """The order ``created`` announces, inserted, and ``created`` emitted, in one statement
    committed on its own (``UnitOfWorkFactory.one_statement``): the path of ``POST /orders``.
    None, and nothing emitted, when an order with this idempotency key already exists."""
    values = {
        "order_id": created.order_id,
        "customer_id": created.customer_id,
        "items": [item.model_dump(mode="json") for item in created.items],
        "total": created.total,
        "status": OrderStatus.PENDING.value,
        "idempotency_key": idempotency_key,
    }
    rows = await units.one_statement(_ADD_ORDER, values, emit=[created])
    return _order(rows[0]) if rows else None


async def get_order(session: AsyncConnection, order_id: str) -> Order | None:
    query = select(orders).where(orders.c.order_id == order_id)
    row = (await session.execute(query)).mappings().one_or_none()
    return _order(row) if row else None


async def lock_orders(session: AsyncConnection, order_ids: Iterable[str]) -> dict[str, Order]:
    """The orders of ``order_ids`` that exist, by id, locked until commit (in id order)."""
    query = (
        select(orders)
        .where(orders.c.order_id.in_(sorted(set(order_ids))))
        .order_by(orders.c.order_id)
        .with_for_update()
    )
    found = (await session.execute(query)).mappings()
    return {row["order_id"]: _order(row) for row in found}


def overdue(
    deadlines: Deadlines,
    *,
    watched_since: datetime | None = None,
    as_of: datetime | None = None,
) -> ColumnElement[bool]:
    """The orders whose saga waited past its status's deadline (``orders_waiting`` serves it).

    Measured on the database's clock, the one that wrote ``updated_at``, at its now or at
    ``as_of``; with ``watched_since``, a wait counts only from that moment on (see the
    sweeper).
    """
    now = func.now() if as_of is None else literal(as_of, DateTime(timezone=True))
    waiting = []
    for status in OrderStatus:
        allowed = deadlines.allowed(status)
        if allowed is None:
            continue
        late = (orders.c.status == status.value) & (orders.c.updated_at < now - allowed)
        if watched_since is not None:
            late &= literal(watched_since, DateTime(timezone=True)) < now - allowed
        waiting.append(late)
    return or_(*waiting)


async def lock_overdue(
    session: AsyncConnection,
    deadlines: Deadlines,
    *,
    limit: int,
    watched_since: datetime | None = None,
    as_of: datetime | None = None,
) -> list[Order]:
    """Up to ``limit`` ``overdue`` sagas, oldest first, locked until commit.

    Orders another transaction holds (a handler moving that saga right now) are skipped:
    they are not stuck, and the sweeper must not wait behind them. PostgreSQL checks the
    condition again on the row it locks, so a saga that moved since this transaction began
    is not returned.
    """
    query = (
        select(orders)
        .where(overdue(deadlines, watched_since=watched_since, as_of=as_of))
        .order_by(orders.c.updated_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_order(row) for row in (await session.execute(query)).mappings()]


async def find_by_idempotency_key(session: AsyncConnection, key: str) -> Order | None:
    query = select(orders).where(orders.c.idempotency_key == key)
    row = (await session.execute(query)).mappings().one_or_none()
    return _order(row) if row else None


@dataclass(frozen=True)
class OrderQuery:
    """Which orders to list: every field narrows the list (None: no condition)."""

    status: OrderStatus | None = None
    customer_id: str | None = None
    older_than: timedelta | None = None
    """Placed at least this long ago."""
    stuck: StuckCriteria | None = None
    """Only the stuck ones (``services.order.stuck``)."""


_WAITING = tuple(status for status in OrderStatus if not status.is_terminal)


def _has_dead_letters() -> ColumnElement[bool]:
    return exists().where(dead_letter_index.c.order_id == orders.c.order_id)


async def set_deadline_clock(session: AsyncConnection, as_of: datetime) -> None:
    """Judge sagas stuck as of ``as_of`` from now on (the sweeper's, at each sweep)."""
    statement = pg_insert(deadline_clock).values(id=True, as_of=as_of)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[deadline_clock.c.id], set_={"as_of": as_of})
    )


def _clock() -> ColumnElement[datetime]:
    """The moment deadlines are judged at: the sweeper's last (``deadline_clock``), or now
    while no sweeper has written one."""
    return func.coalesce(select(deadline_clock.c.as_of).scalar_subquery(), func.now())


def _stuck(criteria: StuckCriteria) -> ColumnElement[bool]:
    """Not terminal, and past its status's deadline or with a dead-lettered event; or timed
    out with a compensation outstanding for longer than the compensation deadline. Deadlines
    are judged as of the ``deadline_clock``."""
    now = _clock()
    because: list[ColumnElement[bool]] = [_has_dead_letters()]
    for status in _WAITING:
        allowed = criteria.deadlines.allowed(status)
        if allowed is not None:
            late = orders.c.updated_at <= now - allowed
            because.append(and_(orders.c.status == status.value, late))
    waiting = and_(orders.c.status.in_([status.value for status in _WAITING]), or_(*because))
    uncompensated = and_(
        orders.c.awaiting_compensation,
        orders.c.updated_at <= now - criteria.deadlines.compensation,
    )
    return or_(waiting, uncompensated)


def stuck_and_waiting(criteria: StuckCriteria) -> ColumnElement[bool]:
    """The stuck sagas a cancel can still end: those not terminal (a timed-out saga awaiting
    its compensations is stuck too, but cancelled already)."""
    return and_(_stuck(criteria), orders.c.status.in_([status.value for status in _WAITING]))


async def lock_stuck(
    session: AsyncConnection, order_ids: Iterable[str], criteria: StuckCriteria
) -> dict[str, Order]:
    """Those of ``order_ids`` still stuck and not terminal (``stuck_and_waiting``), by id,
    locked until commit (in id order). A saga that moved on since it was selected is not
    returned: PostgreSQL checks the condition again on the row it locks."""
    query = (
        select(orders)
        .where(orders.c.order_id.in_(sorted(set(order_ids))), stuck_and_waiting(criteria))
        .order_by(orders.c.order_id)
        .with_for_update()
    )
    found = (await session.execute(query)).mappings()
    return {row["order_id"]: _order(row) for row in found}


def _conditions(query: OrderQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.status is not None:
        conditions.append(orders.c.status == query.status.value)
    if query.customer_id is not None:
        conditions.append(orders.c.customer_id == query.customer_id)
    if query.older_than is not None:
        conditions.append(orders.c.created_at <= func.now() - query.older_than)
    if query.stuck is not None:
        conditions.append(_stuck(query.stuck))
    return conditions


async def find_orders(
    session: AsyncConnection, query: OrderQuery, *, limit: int, after: str | None = None
) -> list[Order]:
    """The orders ``query`` selects, newest first, at most ``limit`` of them; with ``after``
    (an order id), those that come after that order in this order (the next page)."""
    conditions = _conditions(query)
    if after is not None:
        # Keyset pagination: newest first, ties by order id; none if ``after`` is unknown.
        mark = select(orders.c.created_at).where(orders.c.order_id == after).scalar_subquery()
        conditions.append(
            or_(
                orders.c.created_at < mark,
                and_(orders.c.created_at == mark, orders.c.order_id > after),
            )
        )
    statement = (
        select(orders)
        .where(*conditions)
        .order_by(orders.c.created_at.desc(), orders.c.order_id)
        .limit(limit)
    )
    return [_order(row) for row in (await session.execute(statement)).mappings()]


async def count_orders(session: AsyncConnection, query: OrderQuery) -> int:
    """How many orders ``query`` selects."""
    statement = select(func.count()).select_from(orders).where(*_conditions(query))
    return int((await session.execute(statement)).scalar_one())


async def count_awaiting_compensation(session: AsyncConnection) -> int:
    """How many timed-out sagas wait for a compensation (stuck or not yet)."""
    statement = select(func.count()).select_from(orders).where(orders.c.awaiting_compensation)
    return int((await session.execute(statement)).scalar_one())


async def count_by_status(
    session: AsyncConnection, query: OrderQuery | None = None
) -> dict[OrderStatus, int]:
    """How many orders ``query`` (None: every order) selects in each status, zeros included."""
    statement = (
        select(orders.c.status, func.count())
        .where(*_conditions(query or OrderQuery()))
        .group_by(orders.c.status)
    )
    counts = dict.fromkeys(OrderStatus, 0)
    for status, count in (await session.execute(statement)).all():
        counts[OrderStatus(status)] = count
    return counts


_SAVE_SAGA = (
    update(orders)
    .where(orders.c.order_id == bindparam("b_order_id"))
    .values(
        status=bindparam("b_status"),
        cancel_reason=bindparam("b_cancel_reason"),
        facts=bindparam("b_facts"),
        awaiting_compensation=bindparam("b_awaiting_compensation"),
        # The moment of the write, not now(): that is the transaction's start, and a run of
        # records shares one transaction, so its last sagas would seem to end early.
        updated_at=func.clock_timestamp(),
    )
)


async def save_sagas(session: AsyncConnection, sagas: Mapping[str, Saga]) -> None:
    """Write the status, cancel reason and facts of each order's saga, in one round trip."""
    if not sagas:
        return
    rows = [
        {
            "b_order_id": order_id,
            "b_status": saga.status.value,
            "b_cancel_reason": saga.cancel_reason.value if saga.cancel_reason else None,
            "b_facts": sorted(fact.value for fact in saga.facts),
            "b_awaiting_compensation": bool(saga.outstanding_compensations),
        }
        for order_id, saga in sagas.items()
    ]
    await session.execute(_SAVE_SAGA, rows)


async def add_to_timeline(
    session: AsyncConnection,
    events: Sequence[OrderEvent],
    read_from: Mapping[uuid.UUID, ReadFrom] | None = None,
) -> None:
    """Record ``events`` in their orders' timelines (once each, however often delivered),
    with where each was read (``read_from``, by event id) when known."""
    positions = read_from or {}
    rows = []
    for event in events:
        position = positions.get(event.event_id)
        rows.append(
            {
                "event_id": event.event_id,
                "order_id": event.order_id,
                "event_type": event.event_type,
                "occurred_at": event.occurred_at,
                "producer": event.producer,
                "causation_id": event.causation_id,
                "payload": event.model_dump(mode="json"),
                "kafka_topic": position.topic if position else None,
                "kafka_partition": position.partition if position else None,
                "kafka_offset": position.offset if position else None,
            }
        )
    if rows:
        await session.execute(_ADD_TO_TIMELINE, rows)


async def read_timeline(session: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    """The order's events in the order they happened (ties: the order they were recorded)."""
    query = (
        select(timeline.c.payload)
        .where(timeline.c.order_id == order_id)
        .order_by(timeline.c.occurred_at, timeline.c.seq)
    )
    return [payload for (payload,) in (await session.execute(query)).all()]


@dataclass(frozen=True)
class TimelineEntry:
    """One event of an order's timeline, with where the timeline's consumer read it."""

    event: dict[str, Any]
    """The event as published (its JSON)."""
    read_from: ReadFrom | None
    """None for an event recorded before positions were kept."""

    @property
    def event_type(self) -> str:
        return str(self.event["event_type"])


async def timeline_entries(session: AsyncConnection, order_id: str) -> list[TimelineEntry]:
    """``read_timeline`` with each event's topic, partition and offset."""
    query = (
        select(
            timeline.c.payload,
            timeline.c.kafka_topic,
            timeline.c.kafka_partition,
            timeline.c.kafka_offset,
        )
        .where(timeline.c.order_id == order_id)
        .order_by(timeline.c.occurred_at, timeline.c.seq)
    )
    entries = []
    for payload, topic, partition, offset in (await session.execute(query)).all():
        known = topic is not None and partition is not None and offset is not None
        position = ReadFrom(topic, partition, offset) if known else None
        entries.append(TimelineEntry(payload, position))
    return entries


_ADD_DEAD_LETTERS = insert_unless_present(
    dead_letter_index,
    (
        "topic",
        "kafka_partition",
        "kafka_offset",
        "order_id",
        "dead_lettered_at",
        "consumer_group",
        "error_type",
    ),
    conflict=["topic", "kafka_partition", "kafka_offset"],
)


async def add_dead_letters(session: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Index dead letters (``topic``, ``kafka_partition``, ``kafka_offset``, ``order_id``,
    ``dead_lettered_at``, ``consumer_group``, ``error_type``); one already indexed is left as
    it is."""
    if rows:
        await session.execute(_ADD_DEAD_LETTERS, list(rows))


async def last_dead_letters(
    session: AsyncConnection, topics: Sequence[str]
) -> list[Mapping[str, Any]]:
    """For each indexed dead-letter partition of ``topics``, its row of the highest offset."""
    index = dead_letter_index.c
    query = (
        select(dead_letter_index)
        .where(index.topic.in_(list(topics)))
        .order_by(index.topic, index.kafka_partition, index.kafka_offset.desc())
        .distinct(index.topic, index.kafka_partition)
    )
    return [dict(row) for row in (await session.execute(query)).mappings()]


async def forget_dead_letters(
    session: AsyncConnection, topic: str, partition: int, *, before: int | None = None
) -> None:
    """Drop the rows of records the topic no longer holds: those below ``before`` (its
    retention removed them), or all of the partition (the topic was created again)."""
    query = delete(dead_letter_index).where(
        dead_letter_index.c.topic == topic, dead_letter_index.c.kafka_partition == partition
    )
    if before is not None:
        query = query.where(dead_letter_index.c.kafka_offset < before)
    await session.execute(query)


async def dead_letter_topics(
    session: AsyncConnection, order_ids: Iterable[str]
) -> dict[str, set[str]]:
    """The dead-letter topics holding records of each of ``order_ids`` (a page of orders)."""
    wanted = sorted(set(order_ids))
    if not wanted:
        return {}
    query = (
        select(dead_letter_index.c.order_id, dead_letter_index.c.topic)
        .where(dead_letter_index.c.order_id.in_(wanted))
        .distinct()
    )
    found: dict[str, set[str]] = {}
    for order_id, topic in (await session.execute(query)).all():
        found.setdefault(order_id, set()).add(topic)
    return found


async def dead_letter_positions(
    session: AsyncConnection, order_id: str, *, limit: int
) -> list[tuple[str, int, int]]:
    """Where the order's dead letters are (topic, partition, offset), oldest first."""
    query = (
        select(
            dead_letter_index.c.topic,
            dead_letter_index.c.kafka_partition,
            dead_letter_index.c.kafka_offset,
        )
        .where(dead_letter_index.c.order_id == order_id)
        .order_by(dead_letter_index.c.dead_lettered_at, dead_letter_index.c.topic)
        .limit(limit)
    )
    return [(t, p, o) for t, p, o in (await session.execute(query)).all()]


def new_order_id() -> str:
    return str(uuid.uuid4())
