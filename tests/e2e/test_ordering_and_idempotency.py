"""Events in any order, and requests more than once: the order ends where the contract says.

Out of order: an order's real saga is stalled (its ``OrderCreated`` dead-lettered by a
``permanent`` fault on payment), then its later events are written straight to Kafka, by
hand, in an order the services never produce, and the order service must still decide
right. The other services are kept out of the forged story (a ``permanent`` fault for the
order on inventory and shipping, and an unknown sku in its lines, so nothing is stocked,
charged or shipped).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from services.events import (
    CATALOGUE,
    InventoryFailed,
    InventoryReserved,
    OrderCreated,
    OrderShipped,
    PaymentProcessed,
    PaymentRefunded,
    ShippingFailed,
    decode,
)
from shared.contracts.events import Event
from shared.contracts.topics import Topics, encode
from shared.publishing.producer import build_producer
from shared.settings import PlatformSettings
from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import (
    Ledger,
    dead_letters,
    eventually,
    instances,
    settled_timeline,
    stays,
    unique,
    wait_terminal,
)

Json = dict[str, Any]


# Idempotency-Key


async def test_the_same_idempotency_key_twice_gives_one_order_and_one_charge(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("idem", "100.00")
    sku = await ledger.sku("idem", 10)
    key = unique("key")

    first = await ledger.place(customer, [(sku, 1, "30.00")], idempotency_key=key)
    second = await ledger.place(customer, [(sku, 1, "30.00")], idempotency_key=key)

    assert second["order_id"] == first["order_id"]
    await ledger.assert_invariants()
    assert await client.balance(customer) == Decimal("70.00")
    timeline = await settled_timeline(client, first["order_id"])
    assert [e["event_type"] for e in timeline].count("OrderCreated") == 1
    assert await orders_of(system, customer) == [first["order_id"]]


async def test_concurrent_requests_with_one_idempotency_key_give_one_order(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("idem-race", "100.00")
    sku = await ledger.sku("idem-race", 10)
    key = unique("key")

    answers = await asyncio.gather(
        *(ledger.place(customer, [(sku, 2, "5.00")], idempotency_key=key) for _ in range(8))
    )

    assert len({answer["order_id"] for answer in answers}) == 1
    await ledger.assert_invariants()
    assert await client.balance(customer) == Decimal("90.00")
    assert (await client.stock(sku))["shipped"] == 2
    assert await orders_of(system, customer) == [answers[0]["order_id"]]


async def orders_of(system: RunningSystem, customer_id: str) -> list[str]:
    """The ids of the customer's orders among the 500 most recent ones."""
    response = await system.client.http.get(f"{system.client.urls.order}/orders?limit=500")
    response.raise_for_status()
    return [o["order_id"] for o in response.json() if o["customer_id"] == customer_id]


# Out of order


class Forger:
    """Writes hand-made events of one order straight to its topics."""

    def __init__(self, system: RunningSystem, created: OrderCreated, producer: Any) -> None:
        self.created = created
        self.topics = Topics(CATALOGUE, system.env["SAGAKIT_TOPIC_PREFIX"])
        self.producer = producer

    async def publish(self, *events: Event) -> None:
        for event in events:
            record = encode(event, self.topics)
            await self.producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )


@pytest.fixture
async def stalled(system: RunningSystem) -> AsyncIterator[Forger]:
    """An order whose saga stopped at its start, and a way to tell the rest of its story."""
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("forged", "100.00")
    # Placed before the order, whose id is not known yet: its OrderCreated is dead-lettered
    # by whichever payment instance owns its partition.
    for payment in instances(system.state_dir, "payment"):
        await client.add_fault(payment.url, "permanent", count=1)
    order = await ledger.place(customer, [(unique("ghost"), 1, "10.00")])
    order_id = order["order_id"]
    for url in (client.urls.inventory, client.urls.shipping):
        await client.add_fault(url, "permanent", order_ids=[order_id])
    letters = await dead_letters(
        system.kafka_bootstrap, system.topic("order-created-dlq"), order_id
    )
    assert len(letters) == 1, f"the OrderCreated of {order_id} was not dead-lettered"
    created = decode(letters[0].value)
    assert isinstance(created, OrderCreated)
    assert await client.payment(order_id) is None
    assert (await client.order(order_id))["status"] == "PENDING"

    producer = build_producer(PlatformSettings(kafka_bootstrap=system.kafka_bootstrap))
    await producer.start()
    try:
        yield Forger(system, created, producer)
    finally:
        await producer.stop()


def story(created: OrderCreated) -> tuple[PaymentProcessed, InventoryReserved, InventoryFailed]:
    """The first steps the services would take, made by hand, each caused by the one before."""
    lines = [{"sku": item.sku, "quantity": item.quantity} for item in created.items]
    processed = PaymentProcessed.caused_by(
        created,
        producer="payment",
        customer_id=created.customer_id,
        amount=created.total,
        items=lines,
    )
    reserved = InventoryReserved.caused_by(processed, producer="inventory", items=lines)
    failed = InventoryFailed.caused_by(
        processed, producer="inventory", reason="out_of_stock", sku=lines[0]["sku"]
    )
    return processed, reserved, failed


async def timeline_has(system: RunningSystem, order_id: str, event: Event) -> None:
    """Wait until the timeline read model holds ``event``: the order service has read it."""
    await eventually(
        lambda: system.client.timeline(order_id),
        lambda events: str(event.event_id) in {e["event_id"] for e in events},
        what=f"{event.event_type} {event.event_id} in the timeline",
    )


async def test_a_refund_and_a_stock_failure_before_the_payment_cancel_the_order_for_good(
    system: RunningSystem, stalled: Forger
) -> None:
    client, created = system.client, stalled.created
    processed, _, failed = story(created)
    refunded = PaymentRefunded.caused_by(
        failed, producer="payment", customer_id=created.customer_id, amount=created.total
    )

    await stalled.publish(failed, refunded)

    done = await wait_terminal(client, created.order_id)
    assert (done["status"], done["cancel_reason"]) == ("CANCELLED", "out_of_stock")

    await stalled.publish(processed)  # the payment, late

    await timeline_has(system, created.order_id, processed)
    await stays(
        lambda: client.order(created.order_id),
        lambda order: (order["status"], order["cancel_reason"]) == ("CANCELLED", "out_of_stock"),
        seconds=2,
        what="the order stays CANCELLED",
    )
    timeline = await settled_timeline(client, created.order_id)
    # The timeline tells the story in the order it happened, not the order it arrived in.
    assert [e["event_type"] for e in timeline] == [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryFailed",
        "PaymentRefunded",
        "OrderCancelled",
    ]
    assert timeline[-1]["causation_id"] == str(refunded.event_id)


async def test_a_shipment_before_payment_and_reservation_completes_the_order_for_good(
    system: RunningSystem, stalled: Forger
) -> None:
    client, created = system.client, stalled.created
    processed, reserved, _ = story(created)
    shipped = OrderShipped.caused_by(
        reserved, producer="shipping", tracking_id="TRK-FORGED", carrier="forged-post"
    )

    await stalled.publish(shipped)

    done = await wait_terminal(client, created.order_id)
    assert (done["status"], done["cancel_reason"]) == ("COMPLETED", None)

    await stalled.publish(reserved, processed)
    await stalled.publish(ShippingFailed.caused_by(reserved, producer="shipping", reason="late"))

    for event in (reserved, processed):
        await timeline_has(system, created.order_id, event)
    await eventually(
        lambda: client.timeline(created.order_id),
        lambda events: "ShippingFailed" in {e["event_type"] for e in events},
        what="ShippingFailed in the timeline",
    )
    await stays(
        lambda: client.order(created.order_id),
        lambda order: order["status"] == "COMPLETED",
        seconds=2,
        what="the order stays COMPLETED",
    )
    timeline = await settled_timeline(client, created.order_id)
    assert [e["event_type"] for e in timeline] == [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryReserved",
        "OrderShipped",
        "OrderCompleted",
        "ShippingFailed",
    ]
    assert timeline[4]["causation_id"] == str(shipped.event_id)
    # Shipping never saw the forged reservation as its own: it went to its DLQ.
    letters = await dead_letters(
        system.kafka_bootstrap, system.topic("inventory-reserved-dlq"), created.order_id
    )
    assert [decode(letter.value).event_id for letter in letters] == [reserved.event_id]
    assert await client.shipment(created.order_id) is None
