"""Analytics' tables: each order's facts, the aggregates the summary reads, and their queries.

Every statement that locks rows takes them in one order (orders by id, then the aggregate
tables in a fixed order, each by key), so that runs of different topics handled at once wait
for each other rather than deadlock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.analytics.model import Contributions, Ending, OrderFacts, Outcome
from shared.contracts.money import ZERO

__all__ = [
    "Window",
    "add_event_counts",
    "apply",
    "clear",
    "durations_per_hour",
    "events_per_minute",
    "lock_orders",
    "metadata",
    "order_facts",
    "orders",
    "orders_per_minute",
    "outcomes_per_minute",
    "read_window",
    "save_orders",
    "snapshot",
]

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("outcome", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("total", Numeric(18, 2), nullable=True),
)
"""Each order's facts (``model.OrderFacts``): what its contributions were computed from."""

orders_per_minute = Table(
    "orders_per_minute",
    metadata,
    Column("minute", DateTime(timezone=True), primary_key=True),
    Column("orders", Integer, nullable=False),
)

outcomes_per_minute = Table(
    "outcomes_per_minute",
    metadata,
    Column("minute", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("orders", Integer, nullable=False),
    Column("revenue", Numeric(18, 2), nullable=False),
    PrimaryKeyConstraint("minute", "outcome", "reason"),
)

durations_per_hour = Table(
    "durations_per_hour",
    metadata,
    Column("hour", DateTime(timezone=True), nullable=False),
    Column("bucket", Integer, nullable=False),
    Column("sagas", Integer, nullable=False),
    PrimaryKeyConstraint("hour", "bucket"),
)
"""A histogram per hour of the sagas that ended in it (``model.duration_bucket``)."""

events_per_minute = Table(
    "events_per_minute",
    metadata,
    Column("minute", DateTime(timezone=True), nullable=False),
    Column("event_type", Text, nullable=False),
    Column("events", Integer, nullable=False),
    PrimaryKeyConstraint("minute", "event_type"),
)

READ_MODEL = (orders, orders_per_minute, outcomes_per_minute, durations_per_hour, events_per_minute)
"""Every table of the read model: what a rebuild empties."""


async def lock_orders(session: AsyncConnection, order_ids: Iterable[str]) -> dict[str, OrderFacts]:
    """The facts of each of ``order_ids`` (an order not seen yet gets its empty row), locked
    until the transaction ends, in the order of their ids."""
    ids = sorted(set(order_ids))
    new = insert(orders).values([{"order_id": order_id} for order_id in ids])
    await session.execute(new.on_conflict_do_nothing())
    query = select(orders).where(orders.c.order_id.in_(ids)).order_by(orders.c.order_id)
    rows = (await session.execute(query.with_for_update())).mappings()
    return {row["order_id"]: order_facts(row) for row in rows}


async def save_orders(session: AsyncConnection, changed: Mapping[str, OrderFacts]) -> None:
    """Write the facts of the orders in ``changed`` (one statement, executed for each)."""
    statement = update(orders).where(orders.c.order_id == bindparam("id"))
    rows = [{"id": order_id, **_row(changed[order_id])} for order_id in sorted(changed)]
    await session.execute(statement, rows)


async def apply(session: AsyncConnection, delta: Contributions) -> None:
    """Add ``delta`` to the aggregate tables: one statement per table, rows in key order."""
    created = sorted(key for key in delta.counts if key[0] == "created")
    await _add(
        session,
        orders_per_minute,
        ("minute",),
        [{"minute": key[1], "orders": delta.counts[key]} for key in created],
    )
    outcomes = sorted(
        {key for key in (*delta.counts, *delta.revenue) if key[0] == "outcome"}, key=_sortable
    )
    await _add(
        session,
        outcomes_per_minute,
        ("minute", "outcome", "reason"),
        [
            {
                "minute": key[1],
                "outcome": str(key[2]),
                "reason": key[3],
                "orders": delta.counts[key],
                "revenue": delta.revenue.get(key, ZERO),
            }
            for key in outcomes
        ],
    )
    durations = sorted(key for key in delta.counts if key[0] == "duration")
    await _add(
        session,
        durations_per_hour,
        ("hour", "bucket"),
        [{"hour": key[1], "bucket": key[2], "sagas": delta.counts[key]} for key in durations],
    )


async def add_event_counts(
    session: AsyncConnection, counts: Mapping[tuple[datetime, str], int]
) -> None:
    """Add to the number of events of each type seen in each minute."""
    rows = [
        {"minute": minute, "event_type": event_type, "events": counts[(minute, event_type)]}
        for minute, event_type in sorted(counts)
    ]
    await _add(session, events_per_minute, ("minute", "event_type"), rows)


async def _add(
    session: AsyncConnection, table: Table, key: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
    """Add each row's numbers to the row of its key (made at zero when missing); ``rows``
    hold each key once, in the order their rows are locked."""
    if not rows:
        return
    new = insert(table).values(rows)
    added = [name for name in rows[0] if name not in key]
    increments = {name: table.c[name] + new.excluded[name] for name in added}
    await session.execute(new.on_conflict_do_update(index_elements=list(key), set_=increments))


@dataclass(frozen=True)
class Window:
    """What the aggregate tables hold from a minute on (the summary's numbers)."""

    orders_per_minute: list[tuple[datetime, int]]
    outcomes: dict[tuple[str, str], tuple[int, Decimal]]
    """(outcome, reason) -> (orders, revenue)."""
    durations: dict[datetime, dict[int, int]]
    """hour -> histogram (bucket -> sagas)."""
    events: dict[str, int]


async def read_window(session: AsyncConnection, since: datetime) -> Window:
    """The aggregates of the minutes at or after ``since`` (a minute's start) and of the hours
    that hold them; each query reads one row per minute, outcome or bucket, not per event."""
    per_minute = select(orders_per_minute.c.minute, orders_per_minute.c.orders).where(
        orders_per_minute.c.minute >= since, orders_per_minute.c.orders != 0
    )
    o = outcomes_per_minute.c
    outcomes = (
        select(o.outcome, o.reason, func.sum(o.orders), func.sum(o.revenue))
        .where(o.minute >= since)
        .group_by(o.outcome, o.reason)
        .having(func.sum(o.orders) != 0)
    )
    d = durations_per_hour.c
    hour = since.replace(minute=0)
    durations = select(d.hour, d.bucket, d.sagas).where(d.hour >= hour, d.sagas != 0)
    e = events_per_minute.c
    events = (
        select(e.event_type, func.sum(e.events)).where(e.minute >= since).group_by(e.event_type)
    )
    histograms: dict[datetime, dict[int, int]] = defaultdict(dict)
    for row in await session.execute(durations):
        histograms[row.hour][row.bucket] = row.sagas
    return Window(
        orders_per_minute=sorted(
            (row.minute, row.orders) for row in await session.execute(per_minute)
        ),
        outcomes={
            (outcome, reason): (int(count), Decimal(revenue))
            for outcome, reason, count, revenue in await session.execute(outcomes)
        },
        durations=dict(sorted(histograms.items())),
        events={event_type: int(count) for event_type, count in await session.execute(events)},
    )


async def snapshot(session: AsyncConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the read model, table by table in key order, without rows that sum to
    nothing: what two models equal in content compare equal on."""
    found = {}
    for table in READ_MODEL:
        query = select(table).order_by(*table.primary_key.columns)
        found[table.name] = [
            tuple(row) for row in await session.execute(query) if _counts(table, row)
        ]
    return found


async def clear(session: AsyncConnection) -> None:
    """Empty the read model (a rebuild starts from nothing)."""
    for table in READ_MODEL:
        await session.execute(delete(table))


def _counts(table: Table, row: Any) -> bool:
    counted = [
        column.name for column in table.columns if column.name in {"orders", "sagas", "events"}
    ]
    return table is orders or any(getattr(row, name) for name in counted)


def _sortable(key: tuple[object, ...]) -> tuple[object, ...]:
    return tuple(str(part) if isinstance(part, Outcome) else part for part in key)


def order_facts(row: Mapping[Any, Any]) -> OrderFacts:
    """An ``orders`` row as the facts it holds (chaos' check reads them too)."""
    ending = None
    if row["ended_at"] is not None:
        outcome = Outcome(row["outcome"])
        ending = Ending(row["ended_at"], outcome, row["reason"] or "", row["total"] or ZERO)
    return OrderFacts(row["created_at"], ending)


def _row(facts: OrderFacts) -> dict[str, Any]:
    ending = facts.ending
    return {
        "created_at": facts.created_at,
        "ended_at": ending.at if ending else None,
        "outcome": str(ending.outcome) if ending else None,
        "reason": ending.reason if ending else None,
        "total": ending.total if ending else None,
    }
