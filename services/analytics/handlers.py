"""Analytics' reactions: every event counted once in its minute; an order's creation and end
folded into its facts, and the aggregates moved by what that changed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from services.analytics import store
from services.analytics.model import (
    Ending,
    OrderFacts,
    Outcome,
    contributions,
    created,
    ended,
    minute_of,
    total,
)
from services.events import OrderCancelled, OrderCompleted, OrderCreated, OrderEvent
from shared.storage.db import UnitOfWork

__all__ = ["count_events", "record_cancelled", "record_completed", "record_created"]


async def count_events(events: Sequence[OrderEvent], uow: UnitOfWork) -> None:
    """One more event of its type in the minute it occurred (the inbox lets each event id
    through once per group, in this same transaction)."""
    counts: Counter[tuple[datetime, str]] = Counter(
        (minute_of(event.occurred_at), event.event_type) for event in events
    )
    await store.add_event_counts(uow.session, counts)


async def record_created(events: Sequence[OrderCreated], uow: UnitOfWork) -> None:
    """The order exists from the earliest ``OrderCreated`` told of it."""
    await _fold(events, uow, lambda facts, event: created(facts, event.occurred_at))


async def record_completed(events: Sequence[OrderCompleted], uow: UnitOfWork) -> None:
    """The order ended paid for: its total is revenue."""
    await _fold(
        events,
        uow,
        lambda facts, event: ended(
            facts, Ending(event.occurred_at, Outcome.completed, total=event.total)
        ),
    )


async def record_cancelled(events: Sequence[OrderCancelled], uow: UnitOfWork) -> None:
    """The order ended without a sale, for its reason."""
    await _fold(
        events,
        uow,
        lambda facts, event: ended(
            facts, Ending(event.occurred_at, Outcome.cancelled, event.reason)
        ),
    )


E = TypeVar("E", bound=OrderEvent)


async def _fold(
    events: Sequence[E], uow: UnitOfWork, fold: Callable[[OrderFacts, E], OrderFacts]
) -> None:
    """Fold ``events`` into their orders' facts (locked), then move the aggregates by the
    difference between what the changed orders contributed before and contribute now."""
    before = await store.lock_orders(uow.session, (event.order_id for event in events))
    after = dict(before)
    for event in events:
        after[event.order_id] = fold(after[event.order_id], event)
    changed = {order_id: facts for order_id, facts in after.items() if facts != before[order_id]}
    if not changed:
        return
    was = total(contributions(before[order_id]) for order_id in changed)
    now = total(contributions(facts) for facts in changed.values())
    await store.save_orders(uow.session, changed)
    await store.apply(uow.session, now.minus(was))
