"""Inventory's handlers and admin routes against a real PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import (
    CATALOGUE,
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    LineItem,
    OrderShipped,
    PaymentProcessed,
    ShippingFailed,
    decode,
)
from services.faults import FaultSpec
from services.inventory import api, drills, store
from services.inventory.app import service
from services.inventory.drills import OUT_OF_STOCK
from services.inventory.handlers import release_stock, reserve_rule, reserve_stock, ship_stock
from services.inventory.model import FailureReason, ReservationStatus, StockLevel
from shared.consuming.faults import FaultRegistry, business_fault
from shared.contracts.events import Event
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory, make_engine, outbox_table, platform_metadata
from tests.infra import Infrastructure
from tests.integration.handler_support import handle_as_the_runner_does


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("inventory"))
    async with engine.begin() as connection:
        await connection.run_sync(platform_metadata.create_all)
        await connection.run_sync(store.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, Topics(CATALOGUE))


@pytest.fixture
def faults() -> FaultRegistry:
    return FaultRegistry(service.fault_kinds)


# Every test uses its own orders and skus, so tests share one database without interfering.
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def paid(order_id: str, *lines: tuple[str, int]) -> PaymentProcessed:
    items = [LineItem(sku=sku, quantity=quantity) for sku, quantity in lines]
    return PaymentProcessed.first(
        order_id=order_id, producer="payment", customer_id="c-1", amount="10.00", items=items
    )


def shipped(order_id: str) -> OrderShipped:
    return OrderShipped.first(
        order_id=order_id, producer="shipping", tracking_id="TRK-1", carrier="test-post"
    )


def shipping_failed(order_id: str) -> ShippingFailed:
    return ShippingFailed.first(order_id=order_id, producer="shipping", reason="injected_failure")


async def put_stock(units: UnitOfWorkFactory, sku: str, available: int) -> None:
    async with units() as uow:
        await store.set_available(uow.session, sku, available)
        await uow.commit()


async def stock_of(units: UnitOfWorkFactory, sku: str) -> StockLevel | None:
    async with units() as uow:
        return await store.read_stock(uow.session, sku)


async def reservation_of(units: UnitOfWorkFactory, order_id: str) -> store.Reservation | None:
    async with units() as uow:
        return await store.get_reservation(uow.session, order_id)


async def emitted(units: UnitOfWorkFactory, order_id: str) -> list[Event]:
    """The events the handlers wrote to the outbox for ``order_id``, oldest first."""
    query = (
        select(outbox_table.c.value)
        .where(outbox_table.c.key == order_id.encode())
        .order_by(outbox_table.c.id)
    )
    async with units() as uow:
        values = (await uow.session.execute(query)).scalars().all()
    return [decode(value) for value in values]


async def on_paid(units: UnitOfWorkFactory, event: PaymentProcessed, faults: FaultRegistry) -> None:
    # The rule with the out_of_stock fault in front of it, as the declaration wires it.
    decide = business_fault(OUT_OF_STOCK, faults, reserve_rule, drills.out_of_stock)
    await handle_as_the_runner_does(units, lambda uow: reserve_stock([event], uow, decide))


async def on_shipped(units: UnitOfWorkFactory, event: OrderShipped) -> None:
    async with units() as uow:
        await ship_stock([event], uow)
        await uow.commit()


async def on_shipping_failed(units: UnitOfWorkFactory, event: ShippingFailed) -> None:
    await handle_as_the_runner_does(units, lambda uow: release_stock([event], uow))


# --- reserve -------------------------------------------------------------------------------------


async def test_a_paid_order_reserves_every_line_and_emits_inventory_reserved(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, pen, order = new_id("BOOK"), new_id("PEN"), new_id("order")
    await put_stock(units, book, 5)
    await put_stock(units, pen, 10)
    event = paid(order, (book, 2), (pen, 3), (book, 1))

    await on_paid(units, event, faults)

    assert await stock_of(units, book) == StockLevel(available=2, reserved=3)
    assert await stock_of(units, pen) == StockLevel(available=7, reserved=3)
    assert await reservation_of(units, order) == store.Reservation(
        order, ReservationStatus.RESERVED, ((book, 2), (pen, 3), (book, 1))
    )
    [reserved] = await emitted(units, order)
    assert isinstance(reserved, InventoryReserved)
    assert reserved.items == event.items
    assert (reserved.causation_id, reserved.correlation_id) == (event.event_id, order)
    assert reserved.producer == "inventory"


async def test_one_line_short_of_stock_reserves_nothing_and_fails_out_of_stock(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, pen, order = new_id("BOOK"), new_id("PEN"), new_id("order")
    await put_stock(units, book, 5)
    await put_stock(units, pen, 1)

    await on_paid(units, paid(order, (book, 2), (pen, 3)), faults)

    assert await stock_of(units, book) == StockLevel(available=5)
    assert await stock_of(units, pen) == StockLevel(available=1)
    reservation = await reservation_of(units, order)
    assert reservation is not None
    assert (reservation.status, reservation.reason) == (
        ReservationStatus.FAILED,
        FailureReason.out_of_stock,
    )
    [failed] = await emitted(units, order)
    assert isinstance(failed, InventoryFailed)
    assert (failed.reason, failed.sku) == ("out_of_stock", pen)


async def test_an_unknown_sku_fails_with_unknown_sku_and_holds_nothing(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, ghost, order = new_id("BOOK"), new_id("GHOST"), new_id("order")
    await put_stock(units, book, 5)

    await on_paid(units, paid(order, (book, 1), (ghost, 1)), faults)

    assert await stock_of(units, book) == StockLevel(available=5)
    assert await stock_of(units, ghost) is None
    [failed] = await emitted(units, order)
    assert isinstance(failed, InventoryFailed)
    assert (failed.reason, failed.sku) == ("unknown_sku", ghost)


async def test_the_out_of_stock_fault_fails_a_reservation_the_stock_could_cover(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, order, other = new_id("BOOK"), new_id("order"), new_id("order")
    await put_stock(units, book, 5)
    faults.add(FaultSpec(kind=OUT_OF_STOCK, count=1, order_ids=[order]))

    await on_paid(units, paid(order, (book, 1)), faults)
    await on_paid(units, paid(other, (book, 1)), faults)

    [failed] = await emitted(units, order)
    assert isinstance(failed, InventoryFailed)
    assert failed.reason == "out_of_stock"
    [reserved] = await emitted(units, other)
    assert isinstance(reserved, InventoryReserved)
    assert await stock_of(units, book) == StockLevel(available=4, reserved=1)
    assert faults.active() == []


async def test_a_redelivered_or_duplicated_payment_processed_reserves_once(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, order = new_id("BOOK"), new_id("order")
    await put_stock(units, book, 5)
    event = paid(order, (book, 2))
    duplicate = paid(order, (book, 2))  # same order, another event id

    for delivery in (event, event, duplicate):
        await on_paid(units, delivery, faults)

    assert await stock_of(units, book) == StockLevel(available=3, reserved=2)
    assert [type(e) for e in await emitted(units, order)] == [InventoryReserved]


async def test_concurrent_duplicates_of_one_payment_reserve_once(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, order = new_id("BOOK"), new_id("order")
    await put_stock(units, book, 5)

    await asyncio.gather(*(on_paid(units, paid(order, (book, 2)), faults) for _ in range(4)))

    assert await stock_of(units, book) == StockLevel(available=3, reserved=2)
    assert [type(e) for e in await emitted(units, order)] == [InventoryReserved]


async def test_concurrent_orders_on_overlapping_skus_neither_deadlock_nor_oversell(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    a, b = new_id("A"), new_id("B")
    await put_stock(units, a, 10)
    await put_stock(units, b, 10)
    # Half the orders list the skus one way round, half the other: without a lock order
    # these would deadlock.
    orders = [
        paid(new_id("order"), (a, 1), (b, 1)) if n % 2 else paid(new_id("order"), (b, 1), (a, 1))
        for n in range(16)
    ]

    await asyncio.gather(*(on_paid(units, event, faults) for event in orders))

    outcomes = [type(e) for event in orders for e in await emitted(units, event.order_id)]
    assert outcomes.count(InventoryReserved) == 10
    assert outcomes.count(InventoryFailed) == 6
    assert await stock_of(units, a) == StockLevel(available=0, reserved=10)
    assert await stock_of(units, b) == StockLevel(available=0, reserved=10)


# --- ship and release ----------------------------------------------------------------------------


async def test_order_shipped_moves_the_reserved_units_to_shipped_and_emits_nothing(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, order = new_id("BOOK"), new_id("order")
    await put_stock(units, book, 5)
    await on_paid(units, paid(order, (book, 2)), faults)

    await on_shipped(units, shipped(order))
    await on_shipped(units, shipped(order))

    assert await stock_of(units, book) == StockLevel(available=3, reserved=0, shipped=2)
    reservation = await reservation_of(units, order)
    assert reservation is not None
    assert reservation.status is ReservationStatus.SHIPPED
    assert [type(e) for e in await emitted(units, order)] == [InventoryReserved]


async def test_shipping_failed_gives_the_stock_back_and_emits_inventory_released_once(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, pen, order = new_id("BOOK"), new_id("PEN"), new_id("order")
    await put_stock(units, book, 5)
    await put_stock(units, pen, 5)
    await on_paid(units, paid(order, (book, 2), (pen, 1)), faults)
    failure = shipping_failed(order)

    for delivery in (failure, failure, shipping_failed(order)):
        await on_shipping_failed(units, delivery)

    assert await stock_of(units, book) == StockLevel(available=5)
    assert await stock_of(units, pen) == StockLevel(available=5)
    reservation = await reservation_of(units, order)
    assert reservation is not None
    assert reservation.status is ReservationStatus.RELEASED
    [_, released] = await emitted(units, order)
    assert isinstance(released, InventoryReleased)
    assert released.items == (LineItem(sku=book, quantity=2), LineItem(sku=pen, quantity=1))
    assert released.causation_id == failure.event_id


async def test_a_late_shipping_failed_after_order_shipped_changes_nothing(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, order = new_id("BOOK"), new_id("order")
    await put_stock(units, book, 5)
    await on_paid(units, paid(order, (book, 2)), faults)
    await on_shipped(units, shipped(order))

    await on_shipping_failed(units, shipping_failed(order))

    assert await stock_of(units, book) == StockLevel(available=3, shipped=2)
    assert [type(e) for e in await emitted(units, order)] == [InventoryReserved]


async def test_ship_or_release_of_a_failed_reservation_does_nothing(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book, failed, unknown = new_id("BOOK"), new_id("order"), new_id("order")
    await put_stock(units, book, 1)
    await on_paid(units, paid(failed, (book, 2)), faults)  # out of stock

    for order in (failed, unknown):
        await on_shipped(units, shipped(order))
    await on_shipping_failed(units, shipping_failed(failed))

    assert await stock_of(units, book) == StockLevel(available=1)
    assert [type(e) for e in await emitted(units, failed)] == [InventoryFailed]
    assert await emitted(units, unknown) == []
    assert await reservation_of(units, unknown) is None


async def test_a_release_before_the_reservation_voids_it_and_the_late_payment_reserves_nothing(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    # A timed-out order: shipping refused it before inventory saw its PaymentProcessed.
    book, order = new_id("BOOK"), new_id("order")
    await put_stock(units, book, 5)

    await on_shipping_failed(units, shipping_failed(order))
    await on_paid(units, paid(order, (book, 2)), faults)
    await on_shipping_failed(units, shipping_failed(order))  # a second refusal

    assert await stock_of(units, book) == StockLevel(available=5)
    assert await reservation_of(units, order) == store.Reservation(
        order, ReservationStatus.FAILED, (), FailureReason.order_cancelled
    )
    assert await emitted(units, order) == []


async def test_a_release_racing_its_reservation_leaves_nothing_reserved(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    book = new_id("BOOK")
    await put_stock(units, book, 40)
    orders = [new_id("order") for _ in range(20)]

    await asyncio.gather(
        *(on_paid(units, paid(order, (book, 2)), faults) for order in orders),
        *(on_shipping_failed(units, shipping_failed(order)) for order in orders),
    )

    assert await stock_of(units, book) == StockLevel(available=40)
    for order in orders:
        reservation = await reservation_of(units, order)
        assert reservation is not None
        assert reservation.status in (ReservationStatus.RELEASED, ReservationStatus.FAILED)


async def test_available_plus_reserved_plus_shipped_stays_what_was_put_in(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    a, b = new_id("A"), new_id("B")
    await put_stock(units, a, 7)
    await put_stock(units, b, 4)
    orders = [paid(new_id("order"), (a, 2), (b, 1)) for _ in range(5)]

    for n, event in enumerate(orders):
        await on_paid(units, event, faults)
        if n % 2:
            await on_shipped(units, shipped(event.order_id))
        await on_shipping_failed(units, shipping_failed(event.order_id))
        await on_paid(units, event, faults)  # a redelivery
        levels = [await stock_of(units, a), await stock_of(units, b)]
        assert [level.total if level else None for level in levels] == [7, 4]

    level_a, level_b = await stock_of(units, a), await stock_of(units, b)
    assert level_a is not None and level_b is not None
    assert (level_a.reserved, level_b.reserved) == (0, 0)
    assert (level_a.shipped, level_b.shipped) == (4, 2)


# --- admin routes --------------------------------------------------------------------------------


@pytest.fixture
async def client(units: UnitOfWorkFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(api.admin_router(units))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as client:
        yield client


async def test_put_stock_creates_a_sku_and_get_stock_reads_it(client: httpx.AsyncClient) -> None:
    sku = new_id("BOOK")

    put = await client.put(f"/stock/{sku}", json={"available": 10})
    got = await client.get(f"/stock/{sku}")

    expected = {"sku": sku, "available": 10, "reserved": 0, "shipped": 0}
    assert (put.status_code, put.json()) == (200, expected)
    assert (got.status_code, got.json()) == (200, expected)


async def test_put_stock_sets_available_and_keeps_reserved_and_shipped(
    client: httpx.AsyncClient, units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    sku, order = new_id("BOOK"), new_id("order")
    await put_stock(units, sku, 5)
    await on_paid(units, paid(order, (sku, 3)), faults)
    await on_shipped(units, shipped(order))
    await on_paid(units, paid(new_id("order"), (sku, 1)), faults)

    answer = await client.put(f"/stock/{sku}", json={"available": 20})

    assert answer.json() == {"sku": sku, "available": 20, "reserved": 1, "shipped": 3}


@pytest.mark.parametrize(
    "body", [{"available": -1}, {"available": "10"}, {"available": 1.5}, {"available": 1, "x": 1}]
)
async def test_put_stock_refuses_anything_but_a_whole_number_of_units(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    answer = await client.put(f"/stock/{new_id('BOOK')}", json=body)

    assert answer.status_code == 422


async def test_get_stock_of_an_unknown_sku_is_404(client: httpx.AsyncClient) -> None:
    answer = await client.get(f"/stock/{new_id('GHOST')}")

    assert answer.status_code == 404
