"""What ``make chaos`` (and ``sagakit verify``) checks of the analytics read model, once the
run's sagas have ended (``deploy.chaos.service_checks``).

**Analytics agrees**: every ended order of the run is counted with the end the order service
gives it (completed for its total, or cancelled for its reason), and in each minute one of
them ended in, what the summary reads (``outcomes_per_minute``: orders and revenue per
outcome and reason) is the sum over the facts of the orders that ended in that minute. So
the summary's completions, revenue and cancellations by reason are the orders' terminal
statuses, counted once each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from deploy.chaos.checks import CheckResult
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.service_checks import ServiceCheck
from deploy.chaos.snapshot import Snapshot
from services.analytics.model import OrderFacts, Outcome, contributions, minute_of, total
from services.analytics.store import order_facts
from shared.contracts.money import ZERO

__all__ = ["CHECKS", "Books", "judge", "outcomes"]

NAME = "analytics agrees"
TERMINAL = ("COMPLETED", "CANCELLED")
Outcomes = dict[tuple[datetime, str, str], tuple[int, Decimal]]
"""(minute, outcome, reason) -> (orders, revenue): the summary's outcome rows."""

_FACTS = "SELECT order_id, created_at, ended_at, outcome, reason, total FROM orders "
_OF_THE_RUN = _FACTS + "WHERE order_id = ANY($1::text[])"
_ENDED_BETWEEN = _FACTS + "WHERE ended_at >= $1 AND ended_at < $2"
_OUTCOMES = (
    "SELECT minute, outcome, reason, orders, revenue FROM outcomes_per_minute "
    "WHERE minute = ANY($1::timestamptz[])"
)


@dataclass(frozen=True)
class Books:
    """What the read model holds of the run's orders and of the minutes they ended in."""

    facts: Mapping[str, OrderFacts]
    """The run's orders' facts."""
    summed: Outcomes
    """The outcome rows of the minutes a run's order ended in."""
    around: tuple[OrderFacts, ...]
    """The facts of every order (of the run or not) that ended in those minutes."""


def outcomes(facts: Iterable[OrderFacts]) -> Outcomes:
    """The outcome rows these orders add up to (``model.contributions``)."""
    added = total(contributions(one) for one in facts)
    rows: Outcomes = {}
    for key, count in added.counts.items():
        if key[0] != "outcome":
            continue
        _, minute, outcome, reason = key
        assert isinstance(minute, datetime)
        rows[(minute, str(outcome), str(reason))] = (count, added.revenue.get(key, ZERO))
    return rows


def judge(snapshot: Snapshot, books: Books) -> CheckResult:
    """The check's verdict (see the module docstring); no I/O."""
    ended = [order for order in snapshot.orders.values() if order.status in TERMINAL]
    result = CheckResult(NAME, checked=len(ended))
    for order in ended:
        ending = books.facts.get(order.order_id, OrderFacts()).ending
        said = f"order {order.order_id} {order.status}"
        if ending is None:
            result.violations.append(f"{said}: analytics has not counted its end")
        elif order.status == "COMPLETED" and (
            ending.outcome is not Outcome.completed or ending.total != order.total
        ):
            result.violations.append(f"{said} for {order.total}: analytics says {ending}")
        elif order.status == "CANCELLED" and (
            ending.outcome is not Outcome.cancelled or ending.reason != order.cancel_reason
        ):
            result.violations.append(f"{said} ({order.cancel_reason}): analytics says {ending}")
    minutes = {key[0] for key in books.summed} | {
        minute_of(facts.ending.at) for facts in books.facts.values() if facts.ending
    }
    recounted = {k: v for k, v in outcomes(books.around).items() if k[0] in minutes}
    for key in sorted(set(recounted) | set(books.summed)):
        summed, facts = books.summed.get(key, (0, ZERO)), recounted.get(key, (0, ZERO))
        if summed != facts:
            minute, outcome, reason = key
            result.violations.append(
                f"minute {minute:%H:%M}, {outcome} {reason}: the summary counts {summed[0]} "
                f"order(s), {summed[1]}; their facts {facts[0]}, {facts[1]}"
            )
    return result


async def read(endpoints: Endpoints, snapshot: Snapshot) -> Books | None:
    """The run's orders' facts, and the outcome rows and facts of the minutes they ended in,
    from the service's database; None without its address."""
    if "SAGAKIT_ANALYTICS_DATABASE_URL" not in endpoints.env:
        return None
    connection = await asyncpg.connect(endpoints.database_dsn("analytics"), timeout=10)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            run = await connection.fetch(_OF_THE_RUN, list(snapshot.orders))
            facts = {row["order_id"]: order_facts(dict(row)) for row in run}
            ended_in = {minute_of(f.ending.at) for f in facts.values() if f.ending}
            minutes = sorted(ended_in)
            if not minutes:
                return Books(facts, {}, ())
            summed = await connection.fetch(_OUTCOMES, minutes)
            around = await connection.fetch(
                _ENDED_BETWEEN, minutes[0], minutes[-1] + timedelta(minutes=1)
            )
    finally:
        await connection.close()
    return Books(
        facts=facts,
        summed={
            (row["minute"], row["outcome"], row["reason"]): (row["orders"], row["revenue"])
            for row in summed
        },
        around=tuple(
            f
            for f in (order_facts(dict(row)) for row in around)
            if f.ending and minute_of(f.ending.at) in ended_in
        ),
    )


CHECKS = [ServiceCheck(NAME, read, judge)]
