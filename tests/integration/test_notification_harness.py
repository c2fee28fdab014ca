"""The notification service on the handler harness: one notification per customer and event,
alone (events published to it) and behind the whole order saga."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from services.events import OrderCancelled, OrderCompleted, OrderCreated, PaymentRefunded
from services.inventory import app as inventory
from services.inventory import store as inventory_store
from services.notification import api, handlers, store
from services.notification import app as notification
from services.order import app as order
from services.order import store as order_store
from services.payment import app as payment
from services.payment import store as payment_store
from services.shipping import app as shipping
from shared.testing.harness import Harness
from tests.infra import Infrastructure

pytestmark = pytest.mark.integration

WEBHOOK = {"notification_webhook_url": "http://127.0.0.1:9/never-called"}


def created(order_id: str, customer: str = "alice") -> OrderCreated:
    items = [{"sku": "BOOK", "quantity": 1, "unit_price": "10.00"}]
    return OrderCreated.first(
        order_id=order_id, producer="order", customer_id=customer, items=items, total="10.00"
    )


def completed(order_id: str, customer: str = "alice") -> OrderCompleted:
    return OrderCompleted.caused_by(
        created(order_id, customer), producer="order", customer_id=customer, total="10.00"
    )


async def notifications(saga: Harness, **query: str) -> list[store.Notification]:
    async with saga.units("notification")() as uow:
        return await store.find_notifications(
            uow.session,
            customer_id=query.get("customer_id"),
            order_id=query.get("order_id"),
            limit=100,
            after=None,
        )


async def test_each_event_makes_one_notification_for_its_customer(infra: Infrastructure) -> None:
    async with Harness(notification.service, postgres_url=infra.postgres_url) as saga:
        done = completed("o-1")
        refund = PaymentRefunded.caused_by(done, producer="payment", customer_id="bob", amount="4")
        await saga.publish(done, refund)
        await saga.settle()

        found = await notifications(saga)
    assert [(n.event_type, n.customer_id, n.status.value) for n in found] == [
        ("PaymentRefunded", "bob", "recorded"),
        ("OrderCompleted", "alice", "recorded"),
    ]
    assert found[1].event_id == str(done.event_id)
    assert found[1].text == "Your order o-1 is on its way: 10.00 charged."


async def test_a_redelivered_event_makes_no_second_notification(infra: Infrastructure) -> None:
    async with Harness(notification.service, postgres_url=infra.postgres_url) as saga:
        done = completed("o-2")
        await saga.publish(done)
        await saga.settle()
        await saga.publish(done)  # the same event id: the inbox skips it
        await saga.settle()
        # And past the inbox (a copy handled after the inbox forgot it): the event id is the
        # notification's key, so the handler adds nothing either.
        async with saga.units("notification")() as uow:
            await handlers.notify([done], uow, webhook=False)
            await uow.commit()

        assert len(await notifications(saga, order_id="o-2")) == 1


async def test_a_cancel_read_before_its_order_waits_for_the_customer(
    infra: Infrastructure,
) -> None:
    async with Harness(
        notification.service, postgres_url=infra.postgres_url, settings=WEBHOOK
    ) as saga:
        order = created("o-3", customer="carol")
        cancel = OrderCancelled.caused_by(order, producer="order", reason="timed_out")
        await saga.publish(cancel)
        await saga.settle()
        [waiting] = await notifications(saga, order_id="o-3")
        assert (waiting.customer_id, waiting.status.value) == (None, "awaiting_customer")

        await saga.publish(order)
        await saga.settle()

        [told] = await notifications(saga, customer_id="carol")
    assert (told.event_type, told.status.value) == ("OrderCancelled", "pending")
    assert told.text == "Your order o-3 was cancelled (timed_out)."


async def test_the_saga_notifies_a_completed_order_and_a_refunded_cancelled_one(
    infra: Infrastructure,
) -> None:
    services = (order.service, payment.service, inventory.service, shipping.service)
    async with Harness(
        *services,
        notification.service,
        postgres_url=infra.postgres_url,
        settings={"fault_injection": False},
    ) as saga:
        async with saga.units("payment")() as uow:
            await payment_store.set_balance(uow.session, "alice", Decimal("100.00"))
            await uow.commit()
        async with saga.units("inventory")() as uow:
            await inventory_store.set_available(uow.session, "BOOK", 1)
            await uow.commit()
        for placed in (created("o-4"), created("o-5")):
            async with saga.units("order")() as uow:  # what POST /orders does
                items = [item.model_dump(mode="json") for item in placed.items]
                await order_store.add_order(
                    uow.session,
                    order_id=placed.order_id,
                    customer_id="alice",
                    items=items,
                    total=Decimal(placed.total),
                    idempotency_key=None,
                )
                uow.emit(placed)
                await uow.commit()
            await saga.settle()

        by_order = {
            o: [n.event_type for n in await notifications(saga, order_id=o)] for o in ("o-4", "o-5")
        }
    # One book in stock: the first order gets it, the second is refunded and cancelled.
    assert by_order == {"o-4": ["OrderCompleted"], "o-5": ["OrderCancelled", "PaymentRefunded"]}


async def test_the_route_pages_through_a_customers_notifications(infra: Infrastructure) -> None:
    async with Harness(notification.service, postgres_url=infra.postgres_url) as saga:
        await saga.publish(*(completed(f"o-{n}") for n in range(5)), completed("x", "dave"))
        await saga.settle()
        app = FastAPI()
        app.include_router(api.router(saga.units("notification")))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            pages: list[list[str]] = []
            url: str | None = "/notifications?customer_id=alice&limit=2"
            while url is not None:
                answer = await client.get(url)
                assert answer.status_code == 200
                pages.append([n["order_id"] for n in answer.json()])
                url = answer.links.get("next", {}).get("url")
            too_many = await client.get("/notifications?limit=501")

    assert pages == [["o-4", "o-3"], ["o-2", "o-1"], ["o-0"]]
    assert too_many.status_code == 422
