"""The analytics rules (services/analytics/model.py): facts that only move towards one value,
what an order adds to the aggregates, the duration buckets and percentiles read from them."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from itertools import permutations

import pytest

from services.analytics.model import (
    BUCKET_GROWTH,
    Ending,
    OrderFacts,
    Outcome,
    bucket_upper_ms,
    contributions,
    created,
    duration_bucket,
    ended,
    hour_of,
    minute_of,
    percentile,
    total,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 10, 15, 30, 250_000, tzinfo=UTC)


def test_a_moment_falls_in_the_utc_minute_and_hour_it_belongs_to() -> None:
    assert minute_of(T0) == datetime(2026, 12, 7, 10, 15, tzinfo=UTC)
    assert hour_of(T0) == datetime(2026, 12, 7, 10, tzinfo=UTC)
    india = T0.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert hour_of(india) == datetime(2026, 12, 7, 10, tzinfo=UTC)


@pytest.mark.parametrize("ms", [0.001, 1, 1.5, 7, 100, 999.9, 1000, 12_345, 3_600_000])
def test_a_duration_falls_in_the_bucket_whose_bounds_hold_it(ms: float) -> None:
    bucket = duration_bucket(timedelta(milliseconds=ms))
    assert ms <= bucket_upper_ms(bucket)
    assert bucket == 0 or ms > bucket_upper_ms(bucket - 1)


def test_a_bound_itself_belongs_to_its_own_bucket_and_clocks_apart_to_the_first() -> None:
    for bucket in (1, 10, 100, 250):
        # timedelta holds microseconds: the longest one within the bound.
        upper = timedelta(microseconds=math.floor(bucket_upper_ms(bucket) * 1000))
        assert duration_bucket(upper) == bucket
    assert duration_bucket(timedelta(milliseconds=-40)) == 0


def test_a_percentile_is_the_upper_bound_of_the_bucket_of_its_nearest_rank() -> None:
    histogram = {duration_bucket(timedelta(milliseconds=ms)): 0 for ms in (10, 100, 1000)}
    for ms, sagas in ((10, 50), (100, 45), (1000, 5)):
        histogram[duration_bucket(timedelta(milliseconds=ms))] = sagas
    p50, p95, p100 = (percentile(histogram, f) for f in (0.5, 0.95, 1.0))
    assert p50 is not None and 10 <= p50 <= 10 * BUCKET_GROWTH
    assert p95 is not None and 100 <= p95 <= 100 * BUCKET_GROWTH
    assert p100 is not None and 1000 <= p100 <= 1000 * BUCKET_GROWTH


def test_no_percentile_of_no_saga_and_none_outside_zero_to_one() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({3: 0}, 0.95) is None
    with pytest.raises(ValueError, match="fraction"):
        percentile({3: 1}, 0)


def test_the_earliest_creation_and_the_earliest_end_count_whatever_the_order() -> None:
    later = T0 + timedelta(seconds=5)
    completed = Ending(T0 + timedelta(seconds=2), Outcome.completed, total=Decimal("12.50"))
    cancelled = Ending(T0 + timedelta(seconds=9), Outcome.cancelled, "declined")
    steps: list[Callable[[OrderFacts], OrderFacts]] = [
        lambda f: created(f, later),
        lambda f: created(f, T0),
        lambda f: ended(f, cancelled),
        lambda f: ended(f, completed),
        lambda f: ended(f, completed),  # the same end told twice
    ]
    seen = set()
    for order in permutations(steps):
        facts = OrderFacts()
        for step in order:
            facts = step(facts)
        seen.add(facts)
    assert seen == {OrderFacts(T0, completed)}


def test_a_completion_after_a_timeout_is_the_end_whatever_the_order() -> None:
    # The order service's one move between terminal statuses (services/order/model.py): a
    # saga cancelled as timed out whose parcel then shipped is COMPLETED after all, and says
    # so with an OrderCompleted after its OrderCancelled. Seen in make chaos: analytics kept
    # the earlier cancellation, and 35 completed orders counted as timed out.
    timed_out = Ending(T0 + timedelta(seconds=30), Outcome.cancelled, "timed_out")
    completed = Ending(T0 + timedelta(seconds=31), Outcome.completed, total=Decimal("3.00"))
    for told in permutations([timed_out, completed, timed_out]):
        facts = OrderFacts(T0)
        for ending in told:
            facts = ended(facts, ending)
        assert facts == OrderFacts(T0, completed)
    # Any other cancellation is a saga that did not ship: the earliest end stays the rule.
    declined = Ending(T0 + timedelta(seconds=1), Outcome.cancelled, "payment_declined")
    assert ended(ended(OrderFacts(T0), declined), completed).ending == declined


def test_a_completed_order_adds_its_creation_outcome_revenue_and_duration() -> None:
    end = Ending(T0 + timedelta(seconds=3), Outcome.completed, total=Decimal("20.00"))
    added = contributions(OrderFacts(T0, end))
    outcome = ("outcome", minute_of(end.at), Outcome.completed, "")
    assert dict(added.counts) == {
        ("created", minute_of(T0)): 1,
        outcome: 1,
        ("duration", hour_of(end.at), duration_bucket(timedelta(seconds=3))): 1,
    }
    assert added.revenue == {outcome: Decimal("20.00")}


def test_an_order_ended_before_its_creation_is_known_has_no_duration_yet() -> None:
    end = Ending(T0, Outcome.cancelled, "out_of_stock")
    added = contributions(OrderFacts(None, end))
    assert [key[0] for key in added.counts] == ["outcome"]
    assert added.revenue == {("outcome", minute_of(T0), Outcome.cancelled, "out_of_stock"): 0}


def test_the_difference_of_contributions_moves_only_what_changed() -> None:
    before = OrderFacts(None, Ending(T0, Outcome.completed, total=Decimal("5.00")))
    after = created(before, T0 - timedelta(seconds=1))
    delta = contributions(after).minus(contributions(before))
    assert {key[0] for key in delta.counts} == {"created", "duration"}
    assert delta.revenue == {}
    both = total([contributions(after), contributions(after)])
    assert set(both.counts.values()) == {2}
    assert set(both.revenue.values()) == {Decimal("10.00")}
