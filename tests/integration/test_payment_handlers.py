"""Payment's charge and refund against a real PostgreSQL database: the orders a refund overtakes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import (
    CATALOGUE,
    OrderCreated,
    PaymentProcessed,
    PaymentRefunded,
    ShippingFailed,
    decode,
)
from services.payment import store
from services.payment.handlers import charge, refund
from services.payment.model import DeclineReason, PaymentStatus
from shared.contracts.events import Event
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory, make_engine, outbox_table, platform_metadata
from tests.infra import Infrastructure
from tests.integration.handler_support import handle_as_the_runner_does


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("payment"))
    async with engine.begin() as connection:
        await connection.run_sync(platform_metadata.create_all)
        await connection.run_sync(store.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, Topics(CATALOGUE))


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def created(order_id: str, customer_id: str, total: str = "10.00") -> OrderCreated:
    items = [{"sku": "BOOK", "quantity": 1, "unit_price": total}]
    return OrderCreated.first(
        order_id=order_id, producer="order", customer_id=customer_id, items=items, total=total
    )


def refused(order_id: str) -> ShippingFailed:
    """Shipping's answer to a timed-out order: it will never ship."""
    return ShippingFailed.first(order_id=order_id, producer="shipping", reason="order_cancelled")


async def open_account(units: UnitOfWorkFactory, balance: str) -> str:
    customer = new_id("customer")
    async with units() as uow:
        await store.set_balance(uow.session, customer, Decimal(balance))
        await uow.commit()
    return customer


async def balance_of(units: UnitOfWorkFactory, customer: str) -> Decimal | None:
    async with units() as uow:
        return await store.read_balance(uow.session, customer)


async def payment_of(units: UnitOfWorkFactory, order_id: str) -> store.Payment | None:
    async with units() as uow:
        return await store.get_payment(uow.session, order_id)


async def emitted(units: UnitOfWorkFactory, order_id: str) -> list[Event]:
    query = (
        select(outbox_table.c.value)
        .where(outbox_table.c.key == order_id.encode())
        .order_by(outbox_table.c.id)
    )
    async with units() as uow:
        values = (await uow.session.execute(query)).scalars().all()
    return [decode(value) for value in values]


async def on_created(units: UnitOfWorkFactory, event: OrderCreated) -> None:
    await handle_as_the_runner_does(units, lambda uow: charge([event], uow))


async def on_refused(units: UnitOfWorkFactory, event: ShippingFailed) -> None:
    await handle_as_the_runner_does(units, lambda uow: refund(event, uow))


async def test_a_refund_after_the_charge_gives_the_money_back_once(
    units: UnitOfWorkFactory,
) -> None:
    customer, order = await open_account(units, "50.00"), new_id("order")

    await on_created(units, created(order, customer))
    await on_refused(units, refused(order))
    await on_refused(units, refused(order))

    assert await balance_of(units, customer) == Decimal("50.00")
    assert [type(e) for e in await emitted(units, order)] == [PaymentProcessed, PaymentRefunded]


async def test_a_refund_before_the_charge_voids_the_order_and_the_late_order_charges_nothing(
    units: UnitOfWorkFactory,
) -> None:
    customer, order = await open_account(units, "50.00"), new_id("order")

    await on_refused(units, refused(order))
    await on_created(units, created(order, customer))
    await on_refused(units, refused(order))

    assert await balance_of(units, customer) == Decimal("50.00")
    payment = await payment_of(units, order)
    assert payment is not None
    assert (payment.status, payment.reason) == (
        PaymentStatus.DECLINED,
        DeclineReason.order_cancelled,
    )
    assert await emitted(units, order) == []


async def test_a_refund_racing_the_charge_leaves_every_balance_whole(
    units: UnitOfWorkFactory,
) -> None:
    customer, orders = await open_account(units, "200.00"), [new_id("order") for _ in range(20)]

    await asyncio.gather(
        *(on_created(units, created(order, customer)) for order in orders),
        *(on_refused(units, refused(order)) for order in orders),
    )

    assert await balance_of(units, customer) == Decimal("200.00")
    for order in orders:
        payment = await payment_of(units, order)
        assert payment is not None
        assert payment.status in (PaymentStatus.REFUNDED, PaymentStatus.DECLINED)
