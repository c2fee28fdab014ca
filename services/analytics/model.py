"""Analytics rules: what an order's events say about it, and what it adds to the aggregates. Pure.

The read model is a function of the *set* of events, whatever order they arrive in and however
often: each order's facts (``OrderFacts``) only ever move towards one value (the earliest
creation, the earliest end, or a completion after a timeout: ``ended``), so applying an event
twice or late changes nothing more than applying it once in time. An order adds to the
aggregate tables what its facts say (``contributions``); when an event changes its facts, the
handler applies the difference between what the order added before and what it adds now, so
the tables stay the sum over the orders' current facts, and a rebuild from the same events
gives the same tables.

Saga durations are kept per hour as a histogram of log-scale buckets (``duration_bucket``):
p50 and p95 are read from it (``percentile``), exact to within ``BUCKET_GROWTH``, from a few
dozen rows per hour instead of every order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from shared.contracts.money import ZERO

__all__ = [
    "BUCKET_GROWTH",
    "TIMED_OUT",
    "Contributions",
    "Ending",
    "OrderFacts",
    "Outcome",
    "bucket_upper_ms",
    "contributions",
    "created",
    "duration_bucket",
    "ended",
    "hour_of",
    "minute_of",
    "percentile",
    "total",
]

BUCKET_GROWTH = 1.05
"""Each duration bucket's upper bound is this times the previous one's: a percentile read from
the histogram is at most 5 % above the true one."""


class Outcome(StrEnum):
    """How an order's saga ended."""

    completed = "completed"
    cancelled = "cancelled"


@dataclass(frozen=True, order=True)
class Ending:
    """An order's end as one event told it. Ordered by time first: the earliest end wins
    (``ended``: but a completion after a timeout)."""

    at: datetime
    outcome: Outcome
    reason: str = ""
    """Why it was cancelled; empty when completed."""
    total: Decimal = ZERO
    """What the customer paid, when completed: the order's revenue."""


@dataclass(frozen=True)
class OrderFacts:
    """What the events seen so far say about one order."""

    created_at: datetime | None = None
    ending: Ending | None = None


def created(facts: OrderFacts, at: datetime) -> OrderFacts:
    """``facts`` once an ``OrderCreated`` of ``at`` is known: the earliest creation counts."""
    if facts.created_at is not None and facts.created_at <= at:
        return facts
    return replace(facts, created_at=at)


TIMED_OUT: Final = "timed_out"
"""The reason of the one cancellation a completion can follow (the order service's deadline
sweeper; its ``CancelReason.timed_out``)."""


def ended(facts: OrderFacts, ending: Ending) -> OrderFacts:
    """``facts`` once an end is known: the earliest one counts, but a completion beats a
    cancellation for a timeout, whenever either arrives.

    A saga ends once, with one exception: the order service cancels a saga that waited past
    its deadline (``OrderCancelled``, reason ``timed_out``), and if its parcel shipped all the
    same it is ``COMPLETED`` after all (``OrderCompleted`` later). Either way every replay, in
    any order, keeps the same end.
    """
    current = facts.ending
    kept = (
        current is not None
        and not _overrules(ending, current)
        and (_overrules(current, ending) or current <= ending)
    )
    return facts if kept else replace(facts, ending=ending)


def _overrules(ending: Ending, other: Ending) -> bool:
    """Whether ``ending`` is the order's end rather than ``other``, whatever their times."""
    return (
        ending.outcome is Outcome.completed
        and other.outcome is Outcome.cancelled
        and other.reason == TIMED_OUT
    )


@dataclass(frozen=True)
class Contributions:
    """What orders add to the aggregate tables: counts per key, and revenue per outcome key.

    A key names its table first: ``("created", minute)``, ``("outcome", minute, outcome,
    reason)``, ``("duration", hour, bucket)``."""

    counts: Counter[tuple[object, ...]]
    revenue: Mapping[tuple[object, ...], Decimal]

    def minus(self, other: Contributions) -> Contributions:
        """What changes in the tables when ``other`` is replaced by ``self``: only the keys
        whose count or revenue moves."""
        counts: Counter[tuple[object, ...]] = Counter(self.counts)
        counts.subtract(other.counts)
        revenue = {
            key: self.revenue.get(key, ZERO) - other.revenue.get(key, ZERO)
            for key in self.revenue.keys() | other.revenue.keys()
        }
        moved = {key for key, count in counts.items() if count}
        moved |= {key for key, amount in revenue.items() if amount}
        return Contributions(
            Counter({key: counts[key] for key in moved}),
            {key: revenue.get(key, ZERO) for key in moved if key in revenue},
        )


def total(parts: Iterable[Contributions]) -> Contributions:
    """What several orders add together."""
    counts: Counter[tuple[object, ...]] = Counter()
    revenue: dict[tuple[object, ...], Decimal] = {}
    for part in parts:
        counts.update(part.counts)
        for key, amount in part.revenue.items():
            revenue[key] = revenue.get(key, ZERO) + amount
    return Contributions(counts, revenue)


def contributions(facts: OrderFacts) -> Contributions:
    """What one order adds: one creation in its minute, one outcome (with its revenue) in the
    minute it ended, and its saga's duration in the hour it ended, once both ends are known."""
    counts: Counter[tuple[object, ...]] = Counter()
    revenue: dict[tuple[object, ...], Decimal] = {}
    if facts.created_at is not None:
        counts[("created", minute_of(facts.created_at))] += 1
    ending = facts.ending
    if ending is not None:
        key = ("outcome", minute_of(ending.at), ending.outcome, ending.reason)
        counts[key] += 1
        revenue[key] = ending.total if ending.outcome is Outcome.completed else ZERO
        if facts.created_at is not None:
            took = ending.at - facts.created_at
            counts[("duration", hour_of(ending.at), duration_bucket(took))] += 1
    return Contributions(counts, revenue)


def minute_of(moment: datetime) -> datetime:
    """The minute ``moment`` falls in (its start, in UTC)."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def hour_of(moment: datetime) -> datetime:
    """The hour ``moment`` falls in (its start, in UTC: an hour of +05:30 is not one)."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def duration_bucket(took: timedelta) -> int:
    """The histogram bucket of a saga that took ``took``: bucket ``b`` holds durations above
    ``bucket_upper_ms(b - 1)`` up to ``bucket_upper_ms(b)``; bucket 0 everything up to 1 ms
    (a negative duration, from clocks apart, included)."""
    ms = took / timedelta(milliseconds=1)
    if ms <= 1:
        return 0
    bucket = math.ceil(math.log(ms) / math.log(BUCKET_GROWTH))
    # Floating point can put a bound itself one bucket too high: it belongs below.
    return bucket - 1 if bucket_upper_ms(bucket - 1) >= ms else bucket


def bucket_upper_ms(bucket: int) -> float:
    """The longest duration (ms) bucket ``bucket`` holds."""
    return float(BUCKET_GROWTH**bucket)


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """The duration (ms) at or below which ``fraction`` of the sagas of ``histogram`` (bucket
    -> count) ended, as its bucket's upper bound (nearest rank); None when it is empty."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], not {fraction}")
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = math.ceil(fraction * total)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round(bucket_upper_ms(bucket), 3)
    raise AssertionError("unreachable: the ranks add up to the total")
