"""The handler harness (shared.testing.harness): the four reference services' handlers on real
PostgreSQL, events delivered in-process, the whole saga without Kafka or Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from services.events import OrderCreated
from services.inventory import app as inventory
from services.inventory import store as inventory_store
from services.order import app as order
from services.order import store as order_store
from services.payment import app as payment
from services.payment import store as payment_store
from services.shipping import app as shipping
from shared.testing.harness import Harness
from tests.infra import Infrastructure

pytestmark = pytest.mark.integration

SAGA = (order.service, payment.service, inventory.service, shipping.service)


@pytest.fixture
async def saga(infra: Infrastructure) -> AsyncIterator[Harness]:
    # Failure injection off: a fault left registered elsewhere must not strike here.
    async with Harness(
        *SAGA, postgres_url=infra.postgres_url, settings={"fault_injection": False}
    ) as harness:
        async with harness.units("payment")() as uow:
            await payment_store.set_balance(uow.session, "alice", Decimal("100.00"))
            await uow.commit()
        async with harness.units("inventory")() as uow:
            await inventory_store.set_available(uow.session, "BOOK", 5)
            await uow.commit()
        yield harness


async def place(saga: Harness, order_id: str, total: str, quantity: int = 1) -> OrderCreated:
    """What POST /orders does: the order row and its OrderCreated, in one unit of work."""
    unit_price = str(Decimal(total) / quantity)
    items = [{"sku": "BOOK", "quantity": quantity, "unit_price": unit_price}]
    created = OrderCreated.first(
        order_id=order_id, producer="order", customer_id="alice", items=items, total=total
    )
    async with saga.units("order")() as uow:
        await order_store.add_order(
            uow.session,
            order_id=order_id,
            customer_id="alice",
            items=items,
            total=Decimal(total),
            idempotency_key=None,
        )
        uow.emit(created)
        await uow.commit()
    return created


async def status_of(saga: Harness, order_id: str) -> tuple[str, str | None]:
    async with saga.units("order")() as uow:
        found = await order_store.get_order(uow.session, order_id)
    assert found is not None
    return found.status.value, found.cancel_reason and found.cancel_reason.value


async def test_an_order_that_everyone_can_serve_completes(saga: Harness) -> None:
    await place(saga, "o-1", "30.00")

    published = await saga.settle()

    assert [event.event_type for event in published] == [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryReserved",
        "OrderShipped",
        "OrderCompleted",
    ]
    assert await status_of(saga, "o-1") == ("COMPLETED", None)
    assert saga.dead_letters == []


async def test_an_order_the_balance_does_not_cover_is_cancelled(saga: Harness) -> None:
    await place(saga, "o-2", "500.00")

    published = await saga.settle()

    assert [event.event_type for event in published] == [
        "OrderCreated",
        "PaymentFailed",
        "OrderCancelled",
    ]
    assert await status_of(saga, "o-2") == ("CANCELLED", "payment_declined")


async def test_out_of_stock_refunds_the_payment_and_cancels(saga: Harness) -> None:
    await place(saga, "o-3", "60.00", quantity=6)

    published = await saga.settle()

    assert [event.event_type for event in published] == [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryFailed",
        "PaymentRefunded",
        "OrderCancelled",
    ]
    async with saga.units("payment")() as uow:
        assert await payment_store.read_balance(uow.session, "alice") == Decimal("100.00")


async def test_an_event_delivered_twice_is_handled_once(saga: Harness) -> None:
    created = await place(saga, "o-4", "30.00")
    await saga.settle()

    await saga.publish(created, by="order")  # the same event id again
    published = await saga.settle()

    assert published == [created]  # read, and claimed by no group a second time
    async with saga.units("payment")() as uow:
        assert await payment_store.read_balance(uow.session, "alice") == Decimal("70.00")
