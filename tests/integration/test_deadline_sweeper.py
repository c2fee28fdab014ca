"""The deadline sweeper against a real PostgreSQL database: what it cancels, and who leads; and
as of when it decides, the order group's read horizon, against a real Kafka broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import (
    CATALOGUE,
    OrderCancelled,
    OrderCompleted,
    OrderShipped,
    PaymentProcessed,
    decode,
)
from services.order import handlers, store
from services.order.deadlines import Deadlines
from services.order.model import CancelReason, OrderStatus, Saga, SagaFact
from services.order.stuck import StuckCriteria
from services.order.sweeper import DeadlineSweeper
from shared.consuming.horizon import ReadHorizon
from shared.contracts.events import Event
from shared.contracts.topics import Topics, ensure_topics, existing_partitions
from shared.storage.db import UnitOfWorkFactory, make_engine, outbox_table, platform_metadata
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import wait_until

DEADLINES = Deadlines(
    pending=timedelta(seconds=10), paid=timedelta(seconds=20), reserved=timedelta(seconds=30)
)


@pytest.fixture(scope="module")
async def database(infra: Infrastructure) -> str:
    return await infra.create_database("order")


@pytest.fixture(scope="module")
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database)
    async with engine.begin() as connection:
        await connection.run_sync(platform_metadata.create_all)
        await connection.run_sync(store.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, Topics(CATALOGUE))


@pytest.fixture
async def sweeper(units: UnitOfWorkFactory, database: str) -> AsyncIterator[DeadlineSweeper]:
    # A lock key of its own per test: the tests share the database, not the leadership.
    sweeper = DeadlineSweeper(units, database, DEADLINES, lock_key=_new_lock_key())
    yield sweeper
    await sweeper.stop()


def _new_lock_key() -> int:
    return uuid.uuid4().int % 2**31


async def add_saga(units: UnitOfWorkFactory, saga: Saga, *, waited_s: float) -> str:
    """An order whose saga is ``saga``, as if it entered its status ``waited_s`` ago."""
    order_id = store.new_order_id()
    async with units() as uow:
        await store.add_order(
            uow.session,
            order_id=order_id,
            customer_id="customer",
            items=[{"sku": "BOOK", "quantity": 1, "unit_price": "5.00"}],
            total=Decimal("5.00"),
            idempotency_key=None,
        )
        await store.save_sagas(uow.session, {order_id: saga})
        await uow.session.execute(
            update(store.orders)
            .where(store.orders.c.order_id == order_id)
            .values(updated_at=store.orders.c.updated_at - timedelta(seconds=waited_s))
        )
        await uow.commit()
    return order_id


async def order_of(units: UnitOfWorkFactory, order_id: str) -> store.Order:
    async with units() as uow:
        order = await store.get_order(uow.session, order_id)
    assert order is not None
    return order


async def emitted(units: UnitOfWorkFactory, order_id: str) -> list[Event]:
    query = (
        select(outbox_table.c.value)
        .where(outbox_table.c.key == order_id.encode())
        .order_by(outbox_table.c.id)
    )
    async with units() as uow:
        values = (await uow.session.execute(query)).scalars().all()
    return [decode(value) for value in values]


PAID = Saga.replay([SagaFact.PaymentProcessed])
RESERVED = Saga.replay([SagaFact.PaymentProcessed, SagaFact.InventoryReserved])


async def test_each_status_is_cancelled_past_its_own_deadline_and_not_before(
    units: UnitOfWorkFactory, sweeper: DeadlineSweeper
) -> None:
    overdue = {
        OrderStatus.PENDING: await add_saga(units, Saga(), waited_s=11),
        OrderStatus.PAID: await add_saga(units, PAID, waited_s=21),
        OrderStatus.RESERVED: await add_saga(units, RESERVED, waited_s=31),
    }
    in_time = [
        await add_saga(units, Saga(), waited_s=9),
        await add_saga(units, PAID, waited_s=15),
        await add_saga(units, RESERVED, waited_s=25),
    ]

    assert await sweeper.sweep() >= 3  # other tests' overdue sagas may be in the database

    for status, order_id in overdue.items():
        order = await order_of(units, order_id)
        assert (order.status, order.cancel_reason) == (
            OrderStatus.CANCELLED,
            CancelReason.timed_out,
        )
        [cancel] = await emitted(units, order_id)
        assert isinstance(cancel, OrderCancelled)
        assert (cancel.reason, cancel.causation_id, cancel.producer) == ("timed_out", None, "order")
        assert sweeper.timed_out[status] >= 1
    for order_id in in_time:
        assert (await order_of(units, order_id)).status is not OrderStatus.CANCELLED
        assert await emitted(units, order_id) == []
    assert await sweeper.sweep() == 0  # nothing twice


async def test_an_ended_saga_is_never_cancelled_however_old(
    units: UnitOfWorkFactory, sweeper: DeadlineSweeper
) -> None:
    completed = Saga.replay([SagaFact.PaymentProcessed, SagaFact.OrderShipped])
    declined = Saga.replay([SagaFact.PaymentFailed])
    ended = [await add_saga(units, saga, waited_s=3600) for saga in (completed, declined)]

    await sweeper.sweep()

    assert [(await order_of(units, order_id)).status for order_id in ended] == [
        OrderStatus.COMPLETED,
        OrderStatus.CANCELLED,
    ]
    assert (await order_of(units, ended[1])).cancel_reason is CancelReason.payment_declined
    for order_id in ended:
        assert await emitted(units, order_id) == []


async def test_a_saga_a_handler_is_moving_is_skipped_and_then_no_longer_overdue(
    units: UnitOfWorkFactory, sweeper: DeadlineSweeper
) -> None:
    order_id = await add_saga(units, Saga(), waited_s=11)
    late = PaymentProcessed.first(
        order_id=order_id, producer="payment", customer_id="c", amount="5.00",
        items=[{"sku": "BOOK", "quantity": 1}],
    )  # fmt: skip

    async with units() as uow:
        await store.lock_orders(uow.session, [order_id])  # a handler in its transaction
        # A sweep that waited for the locked saga would wait for this transaction, which
        # ends only below: finishing while it is held is the proof, however slow the machine.
        swept = asyncio.create_task(sweeper.sweep())
        try:
            await asyncio.wait_for(asyncio.shield(swept), 30)
        except TimeoutError:
            raise AssertionError(
                "the sweeper waited for a locked saga instead of skipping it"
            ) from None
        await handlers.advance_sagas([late], uow)
        await uow.commit()
    await swept
    await sweeper.sweep()

    order = await order_of(units, order_id)
    assert (order.status, order.cancel_reason) == (OrderStatus.PAID, None)


async def test_a_late_outcome_after_the_timeout_is_absorbed_and_announces_nothing(
    units: UnitOfWorkFactory, sweeper: DeadlineSweeper
) -> None:
    order_id = await add_saga(units, Saga(), waited_s=11)
    await sweeper.sweep()
    late = PaymentProcessed.first(
        order_id=order_id, producer="payment", customer_id="c", amount="5.00",
        items=[{"sku": "BOOK", "quantity": 1}],
    )  # fmt: skip

    async with units() as uow:
        await handlers.advance_sagas([late], uow)
        await uow.commit()

    order = await order_of(units, order_id)
    assert (order.status, order.cancel_reason) == (OrderStatus.CANCELLED, CancelReason.timed_out)
    assert [type(e) for e in await emitted(units, order_id)] == [OrderCancelled]


async def test_a_timed_out_saga_whose_parcel_shipped_anyway_is_completed_after_all(
    units: UnitOfWorkFactory, sweeper: DeadlineSweeper
) -> None:
    order_id = await add_saga(units, RESERVED, waited_s=31)
    await sweeper.sweep()
    shipped = OrderShipped.first(
        order_id=order_id, producer="shipping", tracking_id="TRK-1", carrier="test-carrier"
    )

    for delivery in (shipped, shipped):
        async with units() as uow:
            await handlers.advance_sagas([delivery], uow)
            await uow.commit()

    order = await order_of(units, order_id)
    assert (order.status, order.cancel_reason) == (OrderStatus.COMPLETED, None)
    assert [type(e) for e in await emitted(units, order_id)] == [OrderCancelled, OrderCompleted]


async def test_one_of_two_sweepers_leads_and_the_other_takes_over_when_it_stops(
    units: UnitOfWorkFactory, database: str
) -> None:
    key, short = _new_lock_key(), Deadlines(*(timedelta(seconds=1),) * 3)
    first, second = (
        DeadlineSweeper(units, database, short, interval_s=0.2, lock_key=key) for _ in range(2)
    )
    await first.start()
    await _until(lambda: first.is_leader, "the first sweeper leads")
    await second.start()
    try:
        order_id = await add_saga(units, Saga(), waited_s=11)
        await _until(lambda: first.timed_out[OrderStatus.PENDING] >= 1, "the leader sweeps")
        assert not second.is_leader
        assert second.timed_out.total() == 0

        await first.stop()
        await _until(lambda: second.is_leader, "the second sweeper takes over")
        taken_over = await add_saga(units, PAID, waited_s=21)
        # A new leader counts from when it took the lead: a deadline (1 s) from then on.
        await _until(lambda: second.timed_out[OrderStatus.PAID] >= 1, "the new leader sweeps")
    finally:
        await first.stop()
        await second.stop()

    for each in (order_id, taken_over):
        assert [type(e) for e in await emitted(units, each)] == [OrderCancelled]
    samples = {
        (s.name, s.labels.get("status")): s.value for f in second.metrics() for s in f.samples
    }
    assert samples[("sagakit_sagas_timed_out_total", "PAID")] >= 1
    assert samples[("sagakit_deadline_sweeper_leader", None)] == 0  # stopped


async def test_a_leader_counts_every_wait_from_when_it_took_the_lead(
    units: UnitOfWorkFactory, database: str
) -> None:
    # As after an outage of the order service: sagas overdue by the clock, their outcomes
    # maybe still in the service's backlog. They get a whole deadline under watch first.
    deadline = Deadlines(*(timedelta(seconds=2),) * 3)
    leader = DeadlineSweeper(units, database, deadline, interval_s=0.1, lock_key=_new_lock_key())
    order_id = await add_saga(units, Saga(), waited_s=3600)
    await leader.start()
    try:
        await _until(lambda: leader.is_leader, "the sweeper leads")
        started = time.monotonic()
        await _until(lambda: leader.timed_out[OrderStatus.PENDING] >= 1, "the saga times out")
        waited = time.monotonic() - started
    finally:
        await leader.stop()

    assert waited > 1.5, f"cancelled {waited:.1f} s after the sweeper took the lead"
    assert (await order_of(units, order_id)).cancel_reason is CancelReason.timed_out


async def _until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(0.05)


async def test_errors_recurring_faster_than_the_sweeps_still_let_overdue_sagas_be_cancelled(
    units: UnitOfWorkFactory, database: str, engine: AsyncEngine
) -> None:
    # The sweeper's lock connection is cut every 0.4 s, more often than it sweeps (1 s): each
    # cut is an error it meets at its next sweep, and each time it must lead again. The time
    # it watched before an error still counts, so the saga is cancelled all the same.
    deadline = Deadlines(*(timedelta(seconds=2),) * 3)
    sweeper = DeadlineSweeper(units, database, deadline, interval_s=1.0, lock_key=_new_lock_key())
    await sweeper.start()
    cuts = 0
    try:
        await _until(lambda: sweeper.is_leader, "the sweeper leads")
        order_id = await add_saga(units, Saga(), waited_s=0)
        give_up = time.monotonic() + 45
        while (await order_of(units, order_id)).status is not OrderStatus.CANCELLED:
            assert time.monotonic() < give_up, (
                f"not cancelled within 45 s of a 2 s deadline, its sweeper cut {cuts} times"
            )
            cuts += await _cut_sweeper_connections(engine)
            await asyncio.sleep(0.4)
    finally:
        await sweeper.stop()

    assert cuts >= 2, "the errors did not recur: the test proves nothing"
    assert (await order_of(units, order_id)).cancel_reason is CancelReason.timed_out


async def _cut_sweeper_connections(engine: AsyncEngine) -> int:
    """Terminate the sweeper's lock connection(s) to this database; how many were cut."""
    query = text(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'deadline-sweeper' AND datname = current_database()"
    )
    async with engine.connect() as connection:
        return int((await connection.execute(query)).scalar_one())


async def _write(infra: Infrastructure, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, b"x", key=f"order-{n}".encode())
    finally:
        await producer.stop()


async def _read_everything(infra: Infrastructure, group: str, topic: str) -> None:
    """Commit ``group``'s offsets at the end of every partition of ``topic``: as the order
    service's consumer does once it has processed its backlog."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = (await existing_partitions({"bootstrap_servers": infra.kafka_bootstrap}))[
            topic
        ]
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_the_read_horizon_is_the_latest_moment_the_group_has_read_past(
    infra: Infrastructure,
) -> None:
    topic = infra.topic("horizon-marks")
    await ensure_topics({"bootstrap_servers": infra.kafka_bootstrap}, [topic], partitions=3)
    group = f"horizon-{uuid.uuid4().hex[:8]}"
    horizon = ReadHorizon({"bootstrap_servers": infra.kafka_bootstrap}, group, [topic])
    moments = [datetime(2026, 12, 7, 12, 0, s, tzinfo=UTC) for s in range(4)]
    try:
        # Nothing written, nothing committed: an empty partition needs no reading.
        assert await horizon.advance(moments[0]) == moments[0]
        await _write(infra, topic, 5)
        assert await horizon.advance(moments[1]) == moments[0]  # the group has not read them
        await _read_everything(infra, group, topic)
        assert await horizon.advance(moments[2]) == moments[2]
        await _write(infra, topic, 1)
        assert await horizon.advance(moments[3]) == moments[2]
    finally:
        await horizon.close()


async def test_a_sweep_waits_for_what_the_order_group_has_not_read_yet(
    units: UnitOfWorkFactory, database: str, infra: Infrastructure
) -> None:
    # As under load, or after an outage of the order service's own: the outcomes sit in its
    # group's backlog. A saga overdue by the clock is not cancelled until the group has read
    # everything written before the sweep (its read horizon, shared.consuming.horizon).
    topic = infra.topic("horizon-sweep")
    await ensure_topics({"bootstrap_servers": infra.kafka_bootstrap}, [topic], partitions=2)
    group = f"horizon-{uuid.uuid4().hex[:8]}"
    await _write(infra, topic, 3)
    horizon = ReadHorizon({"bootstrap_servers": infra.kafka_bootstrap}, group, [topic])
    deadline = Deadlines(*(timedelta(seconds=1),) * 3)
    sweeper = DeadlineSweeper(
        units, database, deadline, interval_s=0.1, lock_key=_new_lock_key(), horizon=horizon
    )
    order_id = await add_saga(units, Saga(), waited_s=3600)
    await sweeper.start()
    try:
        await _until(lambda: sweeper.is_leader, "the sweeper leads")
        # 30 sweeps 0.1 s apart: three deadlines' worth of watching, every one held.
        await _until(lambda: sweeper.held >= 30, "30 sweeps held")
        assert (await order_of(units, order_id)).status is OrderStatus.PENDING

        await _read_everything(infra, group, topic)

        async def cancelled() -> bool:
            return (await order_of(units, order_id)).status is OrderStatus.CANCELLED

        await wait_until(cancelled, timeout_s=30, what="cancelled once the group caught up")
    finally:
        await sweeper.stop()

    assert (await order_of(units, order_id)).cancel_reason is CancelReason.timed_out
    samples = {s.name: s.value for f in sweeper.metrics() for s in f.samples}
    assert samples["sagakit_deadline_sweeps_held_total"] >= 30


async def test_the_stuck_listing_and_the_bulk_cancel_judge_deadlines_as_of_the_sweeps(
    units: UnitOfWorkFactory, database: str, engine: AsyncEngine, infra: Infrastructure
) -> None:
    # What an operator sees as stuck (GET /orders?stuck=true, the gauge, the explorer) and may
    # cancel in bulk must be what the sweeper would cancel: while the order group is behind,
    # a saga overdue by the clock alone may have its outcome in the backlog.
    topic = infra.topic("horizon-listing")
    await ensure_topics({"bootstrap_servers": infra.kafka_bootstrap}, [topic], partitions=2)
    group = f"horizon-{uuid.uuid4().hex[:8]}"
    horizon = ReadHorizon({"bootstrap_servers": infra.kafka_bootstrap}, group, [topic])
    deadline = Deadlines(*(timedelta(seconds=1),) * 3)
    sweeper = DeadlineSweeper(
        units, database, deadline, interval_s=0.1, lock_key=_new_lock_key(), horizon=horizon
    )
    await sweeper.start()
    try:
        # Nothing to read yet: the sweeps go as of a horizon that keeps up.
        await _until(lambda: sweeper.horizon_lag_s is not None, "a sweep as of the horizon")
        await _write(infra, topic, 3)  # the group falls behind: its horizon stays before this
        await _until(lambda: (sweeper.horizon_lag_s or 0) > 0.5, "the horizon left behind")
    finally:
        await sweeper.stop()
    overdue_before_it = await add_saga(units, Saga(), waited_s=3600)
    overdue_by_the_clock = await add_saga(units, Saga(), waited_s=0)

    async def past_its_deadline_by_the_clock() -> bool:
        async with engine.connect() as connection:
            late = text(
                "SELECT now() > updated_at + interval '1.5 s' FROM orders WHERE order_id = :id"
            )
            return bool(await connection.scalar(late, {"id": overdue_by_the_clock}))

    await wait_until(past_its_deadline_by_the_clock, what="the saga overdue by the clock")
    criteria = StuckCriteria(deadline)
    async with units() as uow:
        listed = await store.find_orders(uow.session, store.OrderQuery(stuck=criteria), limit=500)
        locked = await store.lock_stuck(
            uow.session, [overdue_before_it, overdue_by_the_clock], criteria
        )
    listed_ids = {order.order_id for order in listed}
    assert overdue_before_it in listed_ids
    assert overdue_by_the_clock not in listed_ids
    assert set(locked) == {overdue_before_it}
