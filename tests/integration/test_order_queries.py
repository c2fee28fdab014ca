"""Order's listing queries and its timeline positions, against a real PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated, PaymentProcessed
from services.order import store
from services.order.deadlines import Deadlines
from services.order.handlers import record_in_timeline
from services.order.model import OrderStatus, Saga, SagaFact
from services.order.stuck import StuckCriteria
from shared.contracts.topics import Topics
from shared.storage.db import ReadFrom, UnitOfWorkFactory, make_engine
from shared.storage.migrations import upgrade_to_head
from tests.infra import Infrastructure

MIGRATIONS = Path(__file__).parents[2] / "services" / "order" / "migrations"
DEADLINES = Deadlines(
    pending=timedelta(minutes=1), paid=timedelta(minutes=2), reserved=timedelta(minutes=5)
)


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("order"))
    await upgrade_to_head(engine, MIGRATIONS)  # the migrations, 0002's columns included
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, Topics(CATALOGUE))


@pytest.fixture
def customer() -> str:
    """Every test lists its own customer's orders: tests share one database."""
    return f"c-{uuid.uuid4().hex[:8]}"


async def place(
    units: UnitOfWorkFactory,
    customer: str,
    status: OrderStatus,
    *,
    placed_ago: timedelta = timedelta(0),
    moved_ago: timedelta = timedelta(0),
) -> str:
    """An order of ``customer`` in ``status``, placed and last moved that long ago."""
    order_id = store.new_order_id()
    async with units() as uow:
        await store.add_order(
            uow.session,
            order_id=order_id,
            customer_id=customer,
            items=[{"sku": "tea", "quantity": 1, "unit_price": "1.00"}],
            total=Decimal("1.00"),
            idempotency_key=None,
        )
        await uow.session.execute(
            update(store.orders)
            .where(store.orders.c.order_id == order_id)
            .values(
                status=status.value,
                created_at=func.now() - placed_ago,
                updated_at=func.now() - moved_ago,
            )
        )
        await uow.commit()
    return order_id


async def listed(units: UnitOfWorkFactory, query: store.OrderQuery) -> set[str]:
    async with units() as uow:
        return {order.order_id for order in await store.find_orders(uow.session, query, limit=50)}


async def test_stuck_means_past_the_deadline_of_its_status_or_dead_lettered_and_not_terminal(
    units: UnitOfWorkFactory, customer: str
) -> None:
    late_pending = await place(units, customer, OrderStatus.PENDING, moved_ago=timedelta(hours=1))
    fresh_pending = await place(units, customer, OrderStatus.PENDING, moved_ago=timedelta(0))
    # 90 s: past PENDING's minute, within PAID's two.
    paid_in_time = await place(units, customer, OrderStatus.PAID, moved_ago=timedelta(seconds=90))
    late_reserved = await place(units, customer, OrderStatus.RESERVED, moved_ago=timedelta(hours=1))
    old_completed = await place(units, customer, OrderStatus.COMPLETED, moved_ago=timedelta(days=1))
    dead_lettered = await place(units, customer, OrderStatus.PAID)
    dead_lettered_done = await place(units, customer, OrderStatus.CANCELLED)
    await index_dead_letters(units, {dead_lettered: "payment-processed-dlq"})
    await index_dead_letters(units, {dead_lettered_done: "x-dlq"})
    # Timed out: one still awaiting its refund for longer than the compensation deadline (a
    # minute), one awaiting it for less, one whose compensations all came.
    unrefunded = await timed_out(units, customer, [SagaFact.PaymentProcessed], timedelta(hours=1))
    refund_coming = await timed_out(units, customer, [SagaFact.PaymentProcessed], timedelta(0))
    compensated = await timed_out(
        units,
        customer,
        [SagaFact.PaymentProcessed, SagaFact.ShippingFailed, SagaFact.PaymentRefunded],
        timedelta(hours=1),
    )
    criteria = StuckCriteria(DEADLINES)

    stuck = await listed(units, store.OrderQuery(customer_id=customer, stuck=criteria))

    assert stuck == {late_pending, late_reserved, dead_lettered, unrefunded}
    everyone = {fresh_pending, paid_in_time, old_completed, dead_lettered_done} | stuck
    everyone |= {refund_coming, compensated}
    assert await listed(units, store.OrderQuery(customer_id=customer)) == everyone
    async with units() as uow:
        assert (
            await store.count_orders(
                uow.session, store.OrderQuery(customer_id=customer, stuck=criteria)
            )
            == 4
        )


async def index_dead_letters(units: UnitOfWorkFactory, letters: dict[str, str]) -> None:
    rows = [
        {
            "topic": topic,
            "kafka_partition": 0,
            "kafka_offset": uuid.uuid4().int % 2**62,
            "order_id": order_id,
            "dead_lettered_at": datetime.now(UTC),
            "consumer_group": "payment",
            "error_type": "PermanentError",
        }
        for order_id, topic in letters.items()
    ]
    async with units() as uow:
        await store.add_dead_letters(uow.session, rows)
        await uow.commit()


async def timed_out(
    units: UnitOfWorkFactory, customer: str, facts: list[SagaFact], moved_ago: timedelta
) -> str:
    """A saga cancelled by the sweeper, with ``facts`` recorded since, last moved that long ago."""
    order_id = await place(units, customer, OrderStatus.PENDING)
    saga = Saga()
    saga.time_out()
    for fact in facts:
        saga.record(fact)
    async with units() as uow:
        await store.save_sagas(uow.session, {order_id: saga})
        await uow.session.execute(
            update(store.orders)
            .where(store.orders.c.order_id == order_id)
            .values(updated_at=func.now() - moved_ago)
        )
        await uow.commit()
    return order_id


async def test_the_listing_pages_on_from_an_order_id(
    units: UnitOfWorkFactory, customer: str
) -> None:
    placed = [
        await place(units, customer, OrderStatus.PAID, placed_ago=timedelta(seconds=n))
        for n in range(5)
    ]
    mine = store.OrderQuery(customer_id=customer)
    async with units() as uow:
        first = await store.find_orders(uow.session, mine, limit=2)
        second = await store.find_orders(uow.session, mine, limit=2, after=first[-1].order_id)
        last = await store.find_orders(uow.session, mine, limit=2, after=second[-1].order_id)
        unknown = await store.find_orders(uow.session, mine, limit=2, after="no-such-order")
    pages = [[order.order_id for order in page] for page in (first, second, last)]
    assert pages == [placed[:2], placed[2:4], placed[4:]]
    assert unknown == []


async def test_the_filters_narrow_the_list_together_and_the_counts_cover_every_status(
    units: UnitOfWorkFactory, customer: str
) -> None:
    old = await place(units, customer, OrderStatus.PAID, placed_ago=timedelta(hours=2))
    new = await place(units, customer, OrderStatus.PAID)
    old_done = await place(units, customer, OrderStatus.COMPLETED, placed_ago=timedelta(hours=3))
    other = await place(units, f"{customer}-other", OrderStatus.PAID, placed_ago=timedelta(days=1))

    hour = timedelta(hours=1)
    assert await listed(units, store.OrderQuery(customer_id=customer, older_than=hour)) == {
        old,
        old_done,
    }
    paid_and_old = store.OrderQuery(customer_id=customer, status=OrderStatus.PAID, older_than=hour)
    assert await listed(units, paid_and_old) == {old}
    assert other not in await listed(units, store.OrderQuery(customer_id=customer))
    assert new in await listed(units, store.OrderQuery(customer_id=customer))

    async with units() as uow:
        counts = await store.count_by_status(uow.session, store.OrderQuery(customer_id=customer))
    assert counts == {
        OrderStatus.PENDING: 0,
        OrderStatus.PAID: 2,
        OrderStatus.RESERVED: 0,
        OrderStatus.COMPLETED: 1,
        OrderStatus.CANCELLED: 0,
    }


async def test_the_timeline_keeps_where_each_event_was_read(
    units: UnitOfWorkFactory, customer: str
) -> None:
    order_id = await place(units, customer, OrderStatus.PENDING)
    created = OrderCreated.first(
        order_id=order_id,
        producer="order",
        customer_id=customer,
        items=[{"sku": "tea", "quantity": 1, "unit_price": "1.00"}],
        total="1.00",
    )
    paid = PaymentProcessed.caused_by(
        created,
        producer="payment",
        customer_id=customer,
        amount="1.00",
        items=[{"sku": "tea", "quantity": 1}],
    )
    async with units() as uow:
        uow.read_from[created.event_id] = ReadFrom("order-created", 3, 41)
        await record_in_timeline([created], uow)
        await uow.commit()
    async with units() as uow:  # a unit of work that knows no position (a request's)
        await record_in_timeline([paid], uow)
        await uow.commit()

    async with units() as uow:
        entries = await store.timeline_entries(uow.session, order_id)
        plain = await store.read_timeline(uow.session, order_id)

    assert [(e.event_type, e.read_from) for e in entries] == [
        ("OrderCreated", ReadFrom("order-created", 3, 41)),
        ("PaymentProcessed", None),
    ]
    assert plain == [entry.event for entry in entries]  # GET /orders/{id}/timeline unchanged
