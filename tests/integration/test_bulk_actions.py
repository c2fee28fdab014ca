"""Bulk actions (services.order.bulk) against a real order database and a real Kafka broker:
dead letters grouped, a group replayed after a count, resumed after a crash, never twice,
paced; stuck sagas cancelled in bulk as a timeout, but not one that moved on meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select, text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCancelled, decode
from services.order import bulk, store
from services.order.dead_letter_rows import DeadLetterRows
from services.order.deadlines import Deadlines
from services.order.model import CancelReason, OrderStatus, Saga, SagaFact
from services.order.stuck import StuckCriteria
from shared.contracts.topics import Topics, ensure_topics, existing_partitions
from shared.ops.dead_letter_index import DeadLetterIndex
from shared.storage.db import UnitOfWorkFactory, make_engine, outbox_table
from shared.storage.migrations import upgrade_to_head
from tests.infra import Infrastructure

MIGRATIONS = Path(__file__).parents[2] / "services" / "order" / "migrations"
MEMORY = timedelta(days=7)
DEADLINES = Deadlines(
    pending=timedelta(seconds=10), paid=timedelta(seconds=20), reserved=timedelta(seconds=30)
)


def options(infra: Infrastructure) -> dict[str, Any]:
    return {"bootstrap_servers": infra.kafka_bootstrap}


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("order"))
    await upgrade_to_head(engine, MIGRATIONS)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, Topics(CATALOGUE))


def runner(
    infra: Infrastructure, units: UnitOfWorkFactory, *, batch: int = 100, rate: float = 1e6
) -> bulk.BulkRunner:
    return bulk.BulkRunner(
        units, options(infra), MEMORY, DEADLINES, rate_per_s=rate, batch_size=batch, idle_s=0.1
    )


async def dead_letter(
    infra: Infrastructure,
    dlq: str,
    letters: list[tuple[str, str, str]],
    *,
    failed_at: datetime | None = None,
) -> None:
    """Dead letters of ``dlq`` as a consumer writes them: (order id, group, error type) each,
    each of its own original record (offset)."""
    original = dlq.removesuffix("-dlq")
    moment = (failed_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for order_id, group, error_type in letters:
            headers = {
                "event_type": "PaymentProcessed",
                "dlq.original.topic": original,
                "dlq.original.partition": "0",
                "dlq.original.offset": str(uuid.uuid4().int % 10**9),
                "dlq.consumer.group": group,
                "dlq.error.type": error_type,
                "dlq.failed_at": moment,
            }
            await producer.send_and_wait(
                dlq,
                f'{{"order_id": "{order_id}"}}'.encode(),
                key=order_id.encode(),
                headers=[(name, value.encode()) for name, value in headers.items()],
            )
    finally:
        await producer.stop()


async def copies_in(infra: Infrastructure, topic: str) -> list[tuple[str, str]]:
    """(key, sagakit.replay.group) of every record of ``topic``."""
    partitions = (await existing_partitions(options(infra)))[topic]
    consumer = AIOKafkaConsumer(**options(infra), auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[str, str]] = []
        deadline = time.monotonic() + 30
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the topic to its end"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    group = dict(record.headers).get("sagakit.replay.group", b"").decode()
                    found.append(((record.key or b"").decode(), group))
        return found
    finally:
        await consumer.stop()


async def topics_with_dead_letters(
    infra: Infrastructure, units: UnitOfWorkFactory, label: str
) -> tuple[str, str, DeadLetterIndex]:
    original = infra.topic(label)
    dlq = Topics.dlq(original)
    await ensure_topics(options(infra), [original, dlq], partitions=2)
    return original, dlq, DeadLetterIndex(options(infra), [dlq], DeadLetterRows(units), CATALOGUE)


async def items(units: UnitOfWorkFactory, action_id: str) -> list[RowMapping]:
    async with units() as uow:
        query = (
            select(store.bulk_action_items)
            .where(store.bulk_action_items.c.action_id == action_id)
            .order_by(store.bulk_action_items.c.seq)
        )
        return list((await uow.session.execute(query)).mappings())


async def test_dead_letters_are_grouped_by_topic_group_and_error_with_counts_and_times(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    _, dlq, index = await topics_with_dead_letters(infra, units, "bulk-groups")
    a, b, c = (f"order-{uuid.uuid4().hex[:8]}" for _ in range(3))
    await dead_letter(
        infra,
        dlq,
        [
            (a, "inventory", "PermanentError"),
            (b, "inventory", "PermanentError"),
            (a, "inventory", "PermanentError"),
            (c, "inventory", "TransientError"),
            (c, "shipping", "PermanentError"),
        ],
    )

    await index.refresh()
    async with units() as uow:
        groups = [g for g in await bulk.dead_letter_groups(uow.session) if g.topic == dlq]

    assert [(g.consumer_group, g.error_type, g.count, g.orders) for g in groups] == [
        ("inventory", "PermanentError", 3, 2),
        ("inventory", "TransientError", 1, 1),
        ("shipping", "PermanentError", 1, 1),
    ]
    assert all(g.first_seen <= g.last_seen for g in groups)


async def test_a_group_is_replayed_after_a_dry_run_once_even_when_started_again(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    original, dlq, index = await topics_with_dead_letters(infra, units, "bulk-replay")
    orders = [f"order-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    await dead_letter(infra, dlq, [(o, "inventory", "PermanentError") for o in orders])
    await dead_letter(infra, dlq, [(orders[0], "shipping", "PermanentError")])  # not selected
    await index.refresh()
    selection = bulk.ReplaySelection(dlq, "inventory", "PermanentError")

    async with units() as uow:
        preview = await bulk.preview_replay(uow.session, selection, MEMORY)
    assert await copies_in(infra, original) == []  # the dry run sent nothing
    async with units() as uow:
        with pytest.raises(bulk.SelectionChanged, match="now holds 5 item"):
            await bulk.start_replay(uow.session, selection, expected=4)
    async with units() as uow:
        action_id, total = await bulk.start_replay(uow.session, selection, expected=5)
        await uow.commit()
    worker = runner(infra, units)
    while await worker.step():
        pass
    async with units() as uow:
        again_preview = await bulk.preview_replay(uow.session, selection, MEMORY)
        _, again_total = await bulk.start_replay(uow.session, selection)
        await uow.commit()
        progress = await bulk.action_progress(uow.session, action_id)

    assert (preview.count, preview.orders, preview.refused) == (5, 5, 0)
    assert sorted(preview.order_ids) == sorted(orders)
    assert total == 5
    assert sorted(await copies_in(infra, original)) == sorted((o, "inventory") for o in orders)
    assert progress is not None and progress.finished_at is not None
    assert progress.outcomes == {"replayed": 5}
    assert (again_preview.count, again_total) == (0, 0)  # sent once: never selected again


async def test_a_replay_cut_by_a_crash_goes_on_where_it_stopped(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    original, dlq, index = await topics_with_dead_letters(infra, units, "bulk-crash")
    orders = [f"order-{uuid.uuid4().hex[:8]}" for _ in range(7)]
    await dead_letter(infra, dlq, [(o, "payment", "TransientError") for o in orders])
    await index.refresh()
    async with units() as uow:
        action_id, _ = await bulk.start_replay(uow.session, bulk.ReplaySelection(dlq))
        await uow.commit()

    class DiesAfterSending(bulk.BulkRunner):
        async def _replay(self, batch: Any) -> dict[int, str]:
            await super()._replay(batch)
            raise RuntimeError("the process died before its outcomes were written")

    first = runner(infra, units, batch=3)
    assert await first.step() == 3
    dying = DiesAfterSending(units, options(infra), MEMORY, DEADLINES, rate_per_s=1e6, batch_size=3)
    with pytest.raises(RuntimeError, match="process died"):
        await dying.step()
    after_crash = await items(units, action_id)
    restarted = runner(infra, units, batch=3)
    while await restarted.step():
        pass
    done = await items(units, action_id)
    copies = [key for key, _ in await copies_in(infra, original)]

    assert [row["outcome"] for row in after_crash] == ["replayed"] * 3 + [None] * 4
    assert [row["outcome"] for row in done] == ["replayed"] * 7
    # The batch of the crash went out twice (its outcomes were lost), every other once: the
    # consumers' inboxes skip the second copies.
    assert sorted(copies) == sorted(orders + [row["order_id"] for row in done[3:6]])


async def test_a_runner_does_no_more_items_a_second_than_its_rate(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    original, dlq, index = await topics_with_dead_letters(infra, units, "bulk-paced")
    await dead_letter(infra, dlq, [(f"order-{n}", "payment", "Boom") for n in range(20)])
    await index.refresh()
    async with units() as uow:
        action_id, _ = await bulk.start_replay(uow.session, bulk.ReplaySelection(dlq))
        await uow.commit()
    paced = runner(infra, units, batch=5, rate=10)

    began = time.monotonic()
    await paced.start()
    try:
        deadline = time.monotonic() + 60
        while (await items(units, action_id))[-1]["outcome"] is None:
            assert time.monotonic() < deadline, "the replay did not finish in 60 s"
            await asyncio.sleep(0.1)
    finally:
        await paced.stop()
    took = time.monotonic() - began

    # 20 items at 10 a second, 5 at a time: three pauses of half a second at least between
    # the four batches (a lower bound: a slow machine only makes it longer).
    assert took >= 1.5, took
    assert len(await copies_in(infra, original)) == 20


async def add_order(units: UnitOfWorkFactory, status: OrderStatus, *, waited_s: float) -> str:
    order_id = store.new_order_id()
    async with units() as uow:
        await store.add_order(
            uow.session,
            order_id=order_id,
            customer_id="bulk",
            items=[{"sku": "BOOK", "quantity": 1, "unit_price": "5.00"}],
            total=Decimal("5.00"),
            idempotency_key=None,
        )
        facts = {OrderStatus.PAID: {SagaFact.PaymentProcessed}}.get(status, set())
        await store.save_sagas(uow.session, {order_id: Saga(status, None, frozenset(facts))})
        await uow.session.execute(
            text(
                "UPDATE orders SET updated_at = now() - make_interval(secs => :s) "
                "WHERE order_id = :o"
            ),
            {"s": waited_s, "o": order_id},
        )
        await uow.commit()
    return order_id


async def test_stuck_sagas_are_cancelled_in_bulk_as_a_timeout_but_not_one_that_moved_on(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    overdue = [await add_order(units, OrderStatus.PENDING, waited_s=3600) for _ in range(3)]
    moves_on = await add_order(units, OrderStatus.PAID, waited_s=3600)
    fresh = await add_order(units, OrderStatus.PENDING, waited_s=0)
    criteria = StuckCriteria(DEADLINES)

    async with units() as uow:
        preview = await bulk.preview_cancel(uow.session, criteria)
        action_id, total = await bulk.start_cancel(uow.session, criteria)
        await uow.commit()
    async with units() as uow:  # a handler moves one on before the runner gets to it
        await store.save_sagas(
            uow.session, {moves_on: Saga(OrderStatus.RESERVED, None, frozenset())}
        )
        await uow.commit()
    worker = runner(infra, units, batch=2)
    while await worker.step():
        pass
    async with units() as uow:
        found = {o: await store.get_order(uow.session, o) for o in [*overdue, moves_on, fresh]}
        progress = await bulk.action_progress(uow.session, action_id)
        values = (await uow.session.execute(select(outbox_table.c.value))).scalars()
        cancels = [event for event in map(decode, values) if isinstance(event, OrderCancelled)]

    assert set(overdue) | {moves_on} <= set(preview.order_ids)
    assert fresh not in preview.order_ids and total == preview.count
    for order_id in overdue:
        order = found[order_id]
        assert order is not None
        assert (order.status, order.cancel_reason) == (
            OrderStatus.CANCELLED,
            CancelReason.timed_out,
        )
    assert found[moves_on] is not None and found[moves_on].status == OrderStatus.RESERVED
    assert found[fresh] is not None and found[fresh].status == OrderStatus.PENDING
    assert progress is not None and progress.finished_at is not None
    assert progress.outcomes["cancelled"] >= 3 and progress.outcomes["not_stuck"] >= 1
    by_order = {event.order_id: event.reason for event in cancels}
    assert {order_id: by_order.get(order_id) for order_id in overdue} == dict.fromkeys(
        overdue, "timed_out"
    )
    assert moves_on not in by_order


async def test_100_000_dead_letters_are_counted_selected_and_done_a_batch_at_a_time(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    # Index rows alone (no records behind them: each item is "gone" when its turn comes):
    # what is measured is the selection and the runner's batches, not Kafka.
    dlq = Topics.dlq(infra.topic("bulk-100k"))
    await ensure_topics(options(infra), [dlq], partitions=6)
    now = datetime.now(UTC)
    rows = [
        {
            "topic": dlq,
            "kafka_partition": n % 6,
            "kafka_offset": n // 6,
            "order_id": f"order-{n}",
            "dead_lettered_at": now,
            "consumer_group": "inventory",
            "error_type": "PermanentError",
        }
        for n in range(100_000)
    ]
    async with units() as uow:
        for chunk in range(0, len(rows), 5_000):
            await store.add_dead_letters(uow.session, rows[chunk : chunk + 5_000])
        await uow.commit()
    selection = bulk.ReplaySelection(dlq, "inventory", "PermanentError")

    async with units() as uow:
        groups = [g for g in await bulk.dead_letter_groups(uow.session) if g.topic == dlq]
        preview = await bulk.preview_replay(uow.session, selection, MEMORY)
        action_id, total = await bulk.start_replay(uow.session, selection, expected=100_000)
        await uow.commit()
    worker = runner(infra, units, batch=500)
    first = await worker.step()
    async with units() as uow:
        progress = await bulk.action_progress(uow.session, action_id)

    assert [(g.count, g.orders) for g in groups] == [(100_000, 100_000)]
    assert (preview.count, preview.orders, len(preview.order_ids)) == (100_000, 100_000, 100)
    assert total == 100_000
    assert first == 500  # one batch, not the whole action
    assert progress is not None and progress.done == 500 and progress.finished_at is None
    assert progress.outcomes == {"gone": 500}


async def test_a_time_range_selects_the_dead_letters_written_within_it(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    _, dlq, index = await topics_with_dead_letters(infra, units, "bulk-range")
    await dead_letter(infra, dlq, [(f"early-{n}", "payment", "Boom") for n in range(2)])
    # Kafka's timestamps are in milliseconds: the moment shares none with the records.
    await asyncio.sleep(0.05)
    moment = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await dead_letter(infra, dlq, [(f"late-{n}", "payment", "Boom") for n in range(3)])
    await index.refresh()

    async with units() as uow:
        since = await bulk.preview_replay(
            uow.session, bulk.ReplaySelection(dlq, since=moment), MEMORY
        )
        until = await bulk.preview_replay(
            uow.session, bulk.ReplaySelection(dlq, until=moment), MEMORY
        )

    assert sorted(since.order_ids) == ["late-0", "late-1", "late-2"]
    assert sorted(until.order_ids) == ["early-0", "early-1"]
