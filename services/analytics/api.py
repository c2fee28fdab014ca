"""Analytics' route: the summary of a recent window, read from the aggregate tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from services.analytics import store
from services.analytics.model import minute_of, percentile
from shared.contracts.money import ZERO, MoneyStr
from shared.storage.db import UnitOfWorkFactory

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "Summary", "router", "summarize"]

DEFAULT_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(days=7)
"""How far back ``since`` may go: at most 10,080 minutes and 169 hours of rows to read."""


class MinutePublic(BaseModel):
    minute: datetime
    orders: int


class HourPublic(BaseModel):
    hour: datetime
    sagas: int
    p50_ms: float
    p95_ms: float


class Summary(BaseModel):
    since: datetime
    """The start of the minute ``since`` fell in: every number counts from there."""
    orders_created: int
    orders_per_minute: list[MinutePublic]
    """Minutes with at least one order, oldest first."""
    completed: int
    revenue: MoneyStr
    """The totals of the orders completed in the window."""
    cancelled: int
    cancelled_by_reason: dict[str, int]
    saga_duration_per_hour: list[HourPublic]
    """Sagas that ended in each hour (from the hour ``since`` fell in), with their duration
    from OrderCreated to OrderCompleted or OrderCancelled, within 5 %."""
    events_by_type: dict[str, int]


def router(units: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter(tags=["analytics"])

    @router.get("/analytics/summary")
    async def summary(
        since: Annotated[
            datetime | None,
            Query(description="From this time (ISO 8601, at most 7 days ago; default 1 h ago)."),
        ] = None,
    ) -> Summary:
        """Orders per minute, revenue, completions and cancellations by reason, saga
        durations p50/p95 per hour, events by type: since a time, from aggregates."""
        now = datetime.now(UTC)
        start = now - DEFAULT_WINDOW if since is None else since
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if start < now - MAX_WINDOW:
            # 422 by number: starlette renamed the constant and warns on the old name.
            raise HTTPException(
                422,
                f"since {start.isoformat()} is more than {MAX_WINDOW.days} days ago: "
                "ask for a later time",
            )
        async with units() as uow:
            window = await store.read_window(uow.session, minute_of(start))
        return summarize(minute_of(start), window)

    return router


def summarize(since: datetime, window: store.Window) -> Summary:
    """The summary of what ``window`` holds, counted from ``since``."""
    completed = [v for (outcome, _), v in window.outcomes.items() if outcome == "completed"]
    cancelled = {
        reason: count
        for (outcome, reason), (count, _) in sorted(window.outcomes.items())
        if outcome == "cancelled"
    }
    hours = [
        HourPublic(
            hour=hour,
            sagas=sum(histogram.values()),
            p50_ms=percentile(histogram, 0.5) or 0.0,
            p95_ms=percentile(histogram, 0.95) or 0.0,
        )
        for hour, histogram in window.durations.items()
    ]
    return Summary(
        since=since,
        orders_created=sum(orders for _, orders in window.orders_per_minute),
        orders_per_minute=[MinutePublic(minute=m, orders=n) for m, n in window.orders_per_minute],
        completed=sum(count for count, _ in completed),
        revenue=sum((revenue for _, revenue in completed), ZERO),
        cancelled=sum(cancelled.values()),
        cancelled_by_reason=cancelled,
        saga_duration_per_hour=hours,
        events_by_type=dict(sorted(window.events.items())),
    )
