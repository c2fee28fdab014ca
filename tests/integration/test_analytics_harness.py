"""The analytics service's read model on the handler harness: events delivered in-process on
real PostgreSQL, counted once whatever is delivered twice, the same whatever the order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.analytics import store
from services.analytics.api import Summary, summarize
from services.analytics.app import service
from services.events import OrderCancelled, OrderCompleted, OrderEvent
from shared.testing.harness import Harness
from tests.analytics_support import saga
from tests.infra import Infrastructure

pytestmark = pytest.mark.integration

START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)


async def fed(infra: Infrastructure, *batches: list[OrderEvent]) -> Harness:
    """A harness whose analytics service has handled each batch in turn (published, settled)."""
    harness = Harness(service, postgres_url=infra.postgres_url)
    await harness.__aenter__()
    for events in batches:
        await harness.publish(*events)
        await harness.settle()
    return harness


async def summary(harness: Harness) -> Summary:
    async with harness.units("analytics")() as uow:
        return summarize(START, await store.read_window(uow.session, START))


async def snapshot(harness: Harness) -> dict[str, list[tuple[Any, ...]]]:
    async with harness.units("analytics")() as uow:
        return await store.snapshot(uow.session)


async def test_orders_revenue_outcomes_and_durations_are_summed(infra: Infrastructure) -> None:
    events = [
        *saga("o-1", START, timedelta(seconds=2), total="12.50"),
        *saga("o-2", START + timedelta(seconds=10), timedelta(seconds=4), total="7.50"),
        *saga("o-3", START + timedelta(minutes=1), timedelta(seconds=1), cancelled="declined"),
    ]
    harness = await fed(infra, events)
    try:
        found = await summary(harness)
    finally:
        await harness.close()

    assert found.orders_created == 3
    assert [(m.minute, m.orders) for m in found.orders_per_minute] == [
        (START, 2),
        (START + timedelta(minutes=1), 1),
    ]
    assert (found.completed, found.revenue) == (2, Decimal("20.00"))
    assert (found.cancelled, found.cancelled_by_reason) == (1, {"declined": 1})
    assert sum(hour.sagas for hour in found.saga_duration_per_hour) == 3
    assert found.events_by_type == {
        "OrderCancelled": 1,
        "OrderCompleted": 2,
        "OrderCreated": 3,
        "PaymentFailed": 1,
        "PaymentProcessed": 2,
    }
    assert harness.dead_letters == []


async def test_a_saga_timed_out_then_completed_after_all_counts_as_completed(
    infra: Infrastructure,
) -> None:
    # The order service cancels a saga past its deadline, then completes it after all when
    # its parcel had shipped (docs/contract.md): the completion is the order's end.
    placed, paid, done = saga("o-1", START, timedelta(seconds=40), total="3.00")
    timed_out = OrderCancelled.caused_by(
        placed, producer="test", occurred_at=START + timedelta(seconds=30), reason="timed_out"
    )
    harness = await fed(infra, [placed, paid, timed_out])
    try:
        before = await summary(harness)
        await harness.publish(done)
        await harness.settle()
        after = await summary(harness)
    finally:
        await harness.close()

    assert (before.completed, before.cancelled_by_reason) == (0, {"timed_out": 1})
    assert (after.completed, after.revenue) == (1, Decimal("3.00"))
    assert (after.cancelled, after.cancelled_by_reason) == (0, {})
    assert sum(hour.sagas for hour in after.saga_duration_per_hour) == 1
    assert harness.dead_letters == []


async def test_an_event_delivered_twice_is_counted_once(infra: Infrastructure) -> None:
    events = saga("o-1", START, timedelta(seconds=2))
    harness = await fed(infra, events, events)
    try:
        assert len(harness.published) == 6  # both copies were delivered
        found = await summary(harness)
    finally:
        await harness.close()
    assert (found.orders_created, found.completed, found.revenue) == (1, 1, Decimal("10.00"))
    assert found.events_by_type["OrderCreated"] == 1


async def test_a_second_end_under_another_event_id_moves_nothing(infra: Infrastructure) -> None:
    events = saga("o-1", START, timedelta(seconds=2))
    end = events[-1]
    assert isinstance(end, OrderCompleted)
    again = end.model_copy(update={"event_id": uuid.uuid4()})  # as a re-emit would carry
    harness = await fed(infra, events, [again])
    try:
        found = await summary(harness)
    finally:
        await harness.close()
    assert (found.completed, found.revenue) == (1, Decimal("10.00"))
    assert found.events_by_type["OrderCompleted"] == 2  # two events, one order


async def test_the_model_is_the_same_whatever_order_the_events_arrive_in(
    infra: Infrastructure,
) -> None:
    events = [
        *saga("o-1", START, timedelta(seconds=2)),
        *saga("o-2", START, timedelta(seconds=90), cancelled="out_of_stock"),
    ]
    in_order = await fed(infra, events)
    ends_first = await fed(infra, events[::-1])
    one_by_one = await fed(infra, *([event] for event in events[::-1]))
    try:
        expected = await snapshot(in_order)
        assert await snapshot(ends_first) == expected
        assert await snapshot(one_by_one) == expected
        assert (await summary(one_by_one)).saga_duration_per_hour[0].sagas == 2
    finally:
        for harness in (in_order, ends_first, one_by_one):
            await harness.close()
