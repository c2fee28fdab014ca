"""How the sagas went, read from the order service's own database.

The order row carries the service's timestamps: ``created_at`` when the API accepted the
order, ``updated_at`` when its saga last moved, which for a terminal order is when it ended.
Reading them straight from PostgreSQL is one query for thousands of orders, where the API
would take one request each; it only reads, so it stays out of the sagas' way.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.stats import Summary, rate, summarize

__all__ = [
    "TERMINAL",
    "SagaOutcome",
    "SagaRow",
    "count_unfinished",
    "fetch_sagas",
    "outcome",
    "wait_for_sagas",
    "wait_until_idle",
]

TERMINAL = ("COMPLETED", "CANCELLED")
POLL_S = 0.5
_CHUNK = 5000  # ids per query: far below PostgreSQL's limits, and quick to plan

_UNFINISHED = (
    "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[]) AND status <> ALL($2::text[])"
)
_ROWS = (
    "SELECT order_id, status, extract(epoch FROM created_at)::float8 AS created, "
    "extract(epoch FROM updated_at)::float8 AS updated "
    "FROM orders WHERE order_id = ANY($1::text[])"
)


@dataclass(frozen=True, slots=True)
class SagaRow:
    """An order's status and the two moments of its saga, in epoch seconds."""

    order_id: str
    status: str
    created: float
    updated: float

    @property
    def completed(self) -> bool:
        return self.status == "COMPLETED"

    @property
    def latency_ms(self) -> float:
        """From accepted to where it stands (to its end, once terminal)."""
        return (self.updated - self.created) * 1000


@dataclass(frozen=True)
class SagaOutcome:
    """How a set of sagas ended: how many completed, the rest by status, and how fast."""

    completed: int
    not_completed: dict[str, int]
    window_s: float
    """From the first order's acceptance to the last saga's completion."""
    first_created: float | None
    last_completed: float | None
    latency: Summary | None
    """Accepted to completed, of the completed sagas."""

    @property
    def per_s(self) -> float | None:
        """Sagas completed per second over the window."""
        return rate(self.completed, self.window_s)

    def to_json(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "not_completed": self.not_completed,
            "window_s": round(self.window_s, 3),
            "completed_per_s": self.per_s,
            "latency": self.latency.to_json() if self.latency else None,
        }


def outcome(rows: Sequence[SagaRow], expected: int) -> SagaOutcome:
    """The outcome of ``expected`` sagas of which the database returned ``rows``."""
    completed = [row for row in rows if row.completed]
    others = dict(Counter(row.status for row in rows if not row.completed))
    if len(rows) < expected:
        others["missing from the database"] = expected - len(rows)
    first = min((row.created for row in rows), default=None)
    last = max((row.updated for row in completed), default=None)
    return SagaOutcome(
        completed=len(completed),
        not_completed=others,
        window_s=last - first if first is not None and last is not None else 0.0,
        first_created=first,
        last_completed=last,
        latency=summarize(row.latency_ms for row in completed),
    )


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[start : start + _CHUNK]) for start in range(0, len(ids), _CHUNK)]


async def fetch_sagas(dsn: str, order_ids: Sequence[str]) -> list[SagaRow]:
    """The rows of ``order_ids`` as they stand now (ids the database lacks are left out)."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = []
        for chunk in _chunks(order_ids):
            rows += await connection.fetch(_ROWS, chunk)
    finally:
        await connection.close()
    return [SagaRow(r["order_id"], r["status"], r["created"], r["updated"]) for r in rows]


async def count_unfinished(connection: asyncpg.Connection, order_ids: Sequence[str]) -> int:
    total = 0
    for chunk in _chunks(order_ids):
        total += await connection.fetchval(_UNFINISHED, chunk, list(TERMINAL))
    return total


async def wait_for_sagas(dsn: str, order_ids: Sequence[str], timeout: float) -> list[SagaRow]:
    """The rows of ``order_ids`` once every one is terminal, or as they stand at ``timeout``."""
    deadline = time.monotonic() + timeout
    connection = await asyncpg.connect(dsn)
    try:
        # Polling: the database is the only place that knows, and it tells no one.
        while True:
            if not await count_unfinished(connection, order_ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_S)
    finally:
        await connection.close()
    return await fetch_sagas(dsn, order_ids)


async def wait_until_idle(dsn: str, customer_prefix: str, timeout: float) -> int:
    """Wait until no order of a customer named ``customer_prefix...`` is still under way;
    return how many still are. Other orders in the database (a shared test system's) do not
    count: their sagas may be stalled on purpose."""
    deadline = time.monotonic() + timeout
    connection = await asyncpg.connect(dsn)
    query = (
        "SELECT count(*) FROM orders WHERE customer_id LIKE $1 || '%' AND status <> ALL($2::text[])"
    )
    try:
        while True:
            busy: int = await connection.fetchval(query, customer_prefix, list(TERMINAL))
            if not busy or time.monotonic() >= deadline:
                return busy
            await asyncio.sleep(POLL_S)
    finally:
        await connection.close()
