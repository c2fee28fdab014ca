"""Shipping's handler and admin route against a real PostgreSQL database."""

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
    InventoryReserved,
    OrderCancelled,
    OrderShipped,
    ShippingFailed,
    decode,
)
from services.faults import FaultSpec
from services.shipping import api, drills, store
from services.shipping.app import service
from services.shipping.drills import FAIL
from services.shipping.handlers import refuse_cancelled, ship_order, ship_rule
from services.shipping.model import (
    HOUSE_CARRIER,
    FailureReason,
    ShipmentStatus,
    tracking_id_for,
)
from shared.consuming.faults import FaultRegistry, business_fault
from shared.contracts.events import Event
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory, make_engine, outbox_table, platform_metadata
from tests.infra import Infrastructure
from tests.integration.handler_support import handle_as_the_runner_does


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("shipping"))
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


def new_order() -> str:
    return f"order-{uuid.uuid4().hex[:8]}"


def reserved(order_id: str) -> InventoryReserved:
    return InventoryReserved.first(
        order_id=order_id, producer="inventory", items=[{"sku": "BOOK", "quantity": 1}]
    )


async def on_reserved(
    units: UnitOfWorkFactory, event: InventoryReserved, faults: FaultRegistry
) -> None:
    # The rule with the fail fault in front of it, as the declaration wires it.
    decide = business_fault(FAIL, faults, ship_rule, drills.failed)
    await handle_as_the_runner_does(units, lambda uow: ship_order([event], uow, decide))


def cancelled(order_id: str, reason: str = "timed_out") -> OrderCancelled:
    return OrderCancelled.first(order_id=order_id, producer="order", reason=reason)


async def on_cancelled(units: UnitOfWorkFactory, event: OrderCancelled) -> None:
    await handle_as_the_runner_does(units, lambda uow: refuse_cancelled([event], uow))


async def shipment_of(units: UnitOfWorkFactory, order_id: str) -> store.Shipment | None:
    async with units() as uow:
        return await store.get_shipment(uow.session, order_id)


async def emitted(units: UnitOfWorkFactory, order_id: str) -> list[Event]:
    """The events the handler wrote to the outbox for ``order_id``, oldest first."""
    query = (
        select(outbox_table.c.value)
        .where(outbox_table.c.key == order_id.encode())
        .order_by(outbox_table.c.id)
    )
    async with units() as uow:
        values = (await uow.session.execute(query)).scalars().all()
    return [decode(value) for value in values]


async def test_a_reserved_order_ships_with_its_stable_tracking_id(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    order = new_order()
    event = reserved(order)

    await on_reserved(units, event, faults)

    assert await shipment_of(units, order) == store.Shipment(
        order, ShipmentStatus.SHIPPED, tracking_id_for(order), None
    )
    [shipped] = await emitted(units, order)
    assert isinstance(shipped, OrderShipped)
    assert (shipped.tracking_id, shipped.carrier) == (tracking_id_for(order), HOUSE_CARRIER)
    assert shipped.schema_version == OrderShipped.current_version() == 2
    assert (shipped.causation_id, shipped.producer) == (event.event_id, "shipping")


async def test_a_redelivered_or_duplicated_inventory_reserved_ships_once(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    order = new_order()
    event = reserved(order)

    for delivery in (event, event, reserved(order)):
        await on_reserved(units, delivery, faults)
    await asyncio.gather(*(on_reserved(units, reserved(order), faults) for _ in range(4)))

    assert [type(e) for e in await emitted(units, order)] == [OrderShipped]


async def test_concurrent_duplicates_of_a_new_order_ship_it_once(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    order = new_order()

    await asyncio.gather(*(on_reserved(units, reserved(order), faults) for _ in range(4)))

    assert [type(e) for e in await emitted(units, order)] == [OrderShipped]


async def test_the_fail_fault_fails_the_shipment_and_emits_shipping_failed(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    order, other = new_order(), new_order()
    faults.add(FaultSpec(kind=FAIL, count=1, order_ids=[order]))

    await on_reserved(units, reserved(order), faults)
    await on_reserved(units, reserved(order), faults)  # a redelivery does not ship it after all
    await on_reserved(units, reserved(other), faults)

    assert await shipment_of(units, order) == store.Shipment(
        order, ShipmentStatus.FAILED, None, drills.INJECTED_FAILURE
    )
    [failed] = await emitted(units, order)
    assert isinstance(failed, ShippingFailed)
    assert failed.reason == "injected_failure"
    assert [type(e) for e in await emitted(units, other)] == [OrderShipped]


# --- a timed-out order -----------------------------------------------------------------------


async def test_a_timed_out_order_not_shipped_yet_is_refused_and_its_late_reservation_ships_nothing(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    order = new_order()
    cancel = cancelled(order)

    await on_cancelled(units, cancel)
    await on_cancelled(units, cancelled(order))  # a copy refuses nothing twice
    await on_reserved(units, reserved(order), faults)

    assert await shipment_of(units, order) == store.Shipment(
        order, ShipmentStatus.FAILED, None, FailureReason.order_cancelled
    )
    [refused] = await emitted(units, order)
    assert isinstance(refused, ShippingFailed)
    assert (refused.reason, refused.causation_id) == ("order_cancelled", cancel.event_id)


async def test_a_timed_out_order_already_shipped_or_failed_keeps_its_shipment(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    shipped, failed = new_order(), new_order()
    faults.add(FaultSpec(kind=FAIL, count=1, order_ids=[failed]))
    await on_reserved(units, reserved(shipped), faults)
    await on_reserved(units, reserved(failed), faults)

    for order in (shipped, failed):
        await on_cancelled(units, cancelled(order))

    assert [type(e) for e in await emitted(units, shipped)] == [OrderShipped]
    assert [type(e) for e in await emitted(units, failed)] == [ShippingFailed]
    assert (await shipment_of(units, shipped)) == store.Shipment(
        shipped, ShipmentStatus.SHIPPED, tracking_id_for(shipped), None
    )


async def test_cancels_that_report_a_failure_already_compensated_are_ignored(
    units: UnitOfWorkFactory,
) -> None:
    orders = {reason: new_order() for reason in ("payment_declined", "out_of_stock")}

    for reason, order in orders.items():
        await on_cancelled(units, cancelled(order, reason))

    for order in orders.values():
        assert await shipment_of(units, order) is None
        assert await emitted(units, order) == []


async def test_a_cancel_racing_the_reservation_either_ships_or_refuses_never_both(
    units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    orders = [new_order() for _ in range(20)]

    await asyncio.gather(
        *(on_reserved(units, reserved(order), faults) for order in orders),
        *(on_cancelled(units, cancelled(order)) for order in orders),
    )

    for order in orders:
        shipment = await shipment_of(units, order)
        assert shipment is not None
        events = [type(e) for e in await emitted(units, order)]
        expected = OrderShipped if shipment.status is ShipmentStatus.SHIPPED else ShippingFailed
        assert events == [expected]


# --- admin route ---------------------------------------------------------------------------------


@pytest.fixture
async def client(units: UnitOfWorkFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(api.admin_router(units))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shipping") as client:
        yield client


async def test_get_shipment_shows_status_and_tracking_id(
    client: httpx.AsyncClient, units: UnitOfWorkFactory, faults: FaultRegistry
) -> None:
    shipped, failed = new_order(), new_order()
    faults.add(FaultSpec(kind=FAIL, order_ids=[failed]))
    await on_reserved(units, reserved(shipped), faults)
    await on_reserved(units, reserved(failed), faults)

    shipped_answer = await client.get(f"/shipments/{shipped}")
    failed_answer = await client.get(f"/shipments/{failed}")

    assert shipped_answer.json() == {
        "order_id": shipped,
        "status": "SHIPPED",
        "tracking_id": tracking_id_for(shipped),
        "reason": None,
    }
    assert failed_answer.json() == {
        "order_id": failed,
        "status": "FAILED",
        "tracking_id": None,
        "reason": "injected_failure",
    }


async def test_get_shipment_of_an_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    answer = await client.get(f"/shipments/{new_order()}")

    assert answer.status_code == 404
