"""Saga deadlines end to end: stuck sagas are cancelled ``timed_out`` and nothing stays taken.

The module runs a system of its own whose every status has a deadline of a few seconds (the
session's system keeps the defaults, which no other test comes near). Each test makes one
step of one order stick with a fault on the service that takes it, waits for the deadline
sweeper to cancel the saga, and checks what was charged or reserved came back, in the
timeline, the order, the balances and the stock, and that a late event after the cancel
(a replayed dead letter, a delayed handler) is refused or compensated too.

Faults for any order fire on the next event an instance handles: each test runs alone in
this system, so that event is its own order's. Payment runs two instances; a test that
needs a payment fault injects it into both and takes it back from the one that did not fire.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest

from shared.ops.replay import replay_dead_letters
from tests.e2e.conftest import RunningSystem, running_system
from tests.e2e.invariants import (
    Ledger,
    caught_up,
    dead_letters,
    eventually,
    instances,
    settled_stock,
    stays,
    wait_terminal,
)
from tests.infra import Infrastructure

Json = dict[str, Any]

DEADLINE_S = 5  # far above a step's tens of milliseconds, even on a loaded machine
SETTINGS = {
    "SAGAKIT_DEADLINE_PENDING_SECONDS": str(DEADLINE_S),
    "SAGAKIT_DEADLINE_PAID_SECONDS": str(DEADLINE_S),
    "SAGAKIT_DEADLINE_RESERVED_SECONDS": str(DEADLINE_S),
    "SAGAKIT_DEADLINE_SWEEP_INTERVAL_SECONDS": "0.5",
    "SAGAKIT_DEADLINE_COMPENSATION_SECONDS": str(DEADLINE_S),
}
WAIT_S = 30.0
"""How long a test waits for what the deadline and the compensations bring (seconds)."""


@pytest.fixture(scope="module")
async def system(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    """This module's own system, with short deadlines (it replaces the session's here)."""
    state_dir = tmp_path_factory.mktemp("deadline-services")
    async with running_system(infra, state_dir, SETTINGS) as running:
        # Ready is not settled: the two payment instances may still be sharing out their
        # partitions, and a saga held up meanwhile would time out. One saga end to end first.
        ledger = Ledger(running.client)
        customer = await ledger.customer("warm-up", "10.00")
        sku = await ledger.sku("warm-up", 1)
        order = await ledger.place(customer, [(sku, 1, "1.00")])
        await wait_terminal(running.client, order["order_id"], timeout=90)
        yield running


async def timed_out(system: RunningSystem, order_id: str) -> Json:
    return await eventually(
        lambda: system.client.order(order_id),
        lambda order: order["status"] == "CANCELLED",
        timeout=WAIT_S,
        what=f"order {order_id} cancelled",
    )


async def timeline_with(system: RunningSystem, order_id: str, *event_types: str) -> list[Json]:
    """The order's timeline once it holds each of ``event_types``."""
    return await eventually(
        lambda: system.client.timeline(order_id),
        lambda events: set(event_types) <= {event["event_type"] for event in events},
        timeout=WAIT_S,
        what=f"timeline of {order_id} with {', '.join(event_types)}",
    )


def the(events: list[Json], event_type: str) -> Json:
    [event] = [event for event in events if event["event_type"] == event_type]
    return event


async def payment_status(system: RunningSystem, order_id: str, status: str) -> Json:
    payment = await eventually(
        lambda: system.client.payment(order_id),
        lambda p: p is not None and p["status"] == status,
        timeout=WAIT_S,
        what=f"payment of {order_id} {status}",
    )
    assert payment is not None
    return payment


async def timed_out_total(system: RunningSystem, status: str) -> float:
    text = (await system.client.http.get(f"{system.client.urls.order}/metrics")).text
    pattern = rf'^sagakit_sagas_timed_out_total{{[^}}]*status="{status}"[^}}]*}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))


async def fault_on_one_payment_instance(
    system: RunningSystem, kind: str, **spec: Any
) -> Callable[[], Awaitable[None]]:
    """A fault on whichever payment instance handles the next order: put on both now; the
    returned call waits until it fired on one and takes it back from the other (where it
    would fire on a later event of the same order)."""
    urls = [each.url for each in instances(system.state_dir, "payment")]
    for url in urls:
        await system.client.add_fault(url, kind, count=1, **spec)

    async def remaining() -> list[int]:
        return [len((await system.client.http.get(f"{url}/faults")).json()) for url in urls]

    async def fired() -> None:
        left = await eventually(
            remaining, lambda counts: 0 in counts, timeout=WAIT_S, what=f"payment {kind} fired"
        )
        for url, count in zip(urls, left, strict=True):
            if count:
                (await system.client.http.delete(f"{url}/faults")).raise_for_status()

    return fired


async def replay(system: RunningSystem, topic: str, order_id: str) -> None:
    dlq = system.topic(f"{topic}-dlq")
    assert await dead_letters(system.kafka_bootstrap, dlq, order_id), f"nothing in {dlq}"
    replayed = await replay_dead_letters(
        {"bootstrap_servers": system.kafka_bootstrap},
        dlq,
        match=lambda record: record.key == order_id.encode(),
        memory=None,  # dead-lettered seconds ago: no age to check
        timeout_s=30,
    )
    assert len(replayed.send) == 1


async def test_sagas_that_keep_moving_are_never_cancelled(system: RunningSystem) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("moving", "100.00")
    sku = await ledger.sku("moving", 10)
    orders = [await ledger.place(customer, [(sku, 1, "5.00")]) for _ in range(5)]

    final = await ledger.settle()
    await stays(
        lambda: system.client.order(orders[-1]["order_id"]),
        lambda order: order["status"] == "COMPLETED",
        seconds=DEADLINE_S + 1,
        what="a completed order stays completed past every deadline",
    )

    assert {order["status"] for order in final.values()} == {"COMPLETED"}
    await ledger.assert_invariants()


async def test_a_saga_payment_never_took_is_cancelled_timed_out_and_its_late_order_charges_nothing(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("pending", "100.00")
    sku = await ledger.sku("pending", 10)
    before = await timed_out_total(system, "PENDING")
    fired = await fault_on_one_payment_instance(system, "permanent")

    order = await ledger.place(customer, [(sku, 2, "7.50")])
    order_id = order["order_id"]
    await fired()  # OrderCreated dead-lettered: payment will not charge it by itself

    cancelled = await timed_out(system, order_id)
    assert cancelled["cancel_reason"] == "timed_out"
    events = await timeline_with(system, order_id, "OrderCancelled", "ShippingFailed")
    assert [e["event_type"] for e in events] == ["OrderCreated", "OrderCancelled", "ShippingFailed"]
    cancel = the(events, "OrderCancelled")
    assert (cancel["reason"], cancel["producer"], cancel["causation_id"]) == (
        "timed_out",
        "order",
        None,
    )
    refusal = the(events, "ShippingFailed")
    assert (refusal["reason"], refusal["causation_id"]) == ("order_cancelled", cancel["event_id"])
    voided = await payment_status(system, order_id, "DECLINED")
    assert voided["reason"] == "order_cancelled"
    assert await timed_out_total(system, "PENDING") >= before + 1

    # The operator replays the dead letter: the order it brings back is over, nothing is taken.
    await replay(system, "order-created", order_id)
    await caught_up(system.kafka_bootstrap, system.topic("payment"), system.topic("order-created"))
    assert await client.balance(customer) == 100  # the late OrderCreated charged nothing
    assert (await client.order(order_id))["cancel_reason"] == "timed_out"
    assert (await client.payment(order_id) or {}).get("status") == "DECLINED"
    await ledger.assert_invariants()


async def test_a_charged_saga_stuck_before_its_stock_is_refunded(system: RunningSystem) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("paid", "100.00")
    sku = await ledger.sku("paid", 10)
    await client.add_fault(client.urls.inventory, "permanent", count=1)

    order = await ledger.place(customer, [(sku, 2, "7.50")])
    order_id = order["order_id"]

    assert (await timed_out(system, order_id))["cancel_reason"] == "timed_out"
    events = await timeline_with(system, order_id, "PaymentRefunded")
    assert the(events, "OrderCancelled")["reason"] == "timed_out"
    assert the(events, "ShippingFailed")["reason"] == "order_cancelled"
    await payment_status(system, order_id, "REFUNDED")
    assert await client.balance(customer) == 100

    # PaymentProcessed was dead-lettered by inventory; replayed, it reserves nothing.
    await replay(system, "payment-processed", order_id)
    await caught_up(
        system.kafka_bootstrap, system.topic("inventory"), system.topic("payment-processed")
    )
    stock = await client.stock(sku)
    assert (stock["available"], stock["reserved"]) == (10, 0)  # the late one reserved nothing
    await ledger.assert_invariants()


async def test_a_reserved_saga_stuck_before_shipping_releases_its_stock_and_is_refunded(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("reserved", "100.00")
    sku = await ledger.sku("reserved", 10)
    await client.add_fault(client.urls.shipping, "permanent", count=1)

    order = await ledger.place(customer, [(sku, 3, "5.00")])
    order_id = order["order_id"]

    assert (await timed_out(system, order_id))["cancel_reason"] == "timed_out"
    events = await timeline_with(system, order_id, "InventoryReleased", "PaymentRefunded")
    assert (
        the(events, "InventoryReserved")["occurred_at"]
        < the(events, "OrderCancelled")["occurred_at"]
    )
    stock = await settled_stock(client, sku)
    assert (stock["available"], stock["shipped"]) == (10, 0)
    await payment_status(system, order_id, "REFUNDED")
    shipment = await client.shipment(order_id)
    assert shipment is not None
    assert (shipment["status"], shipment["reason"]) == ("FAILED", "order_cancelled")

    # InventoryReserved was dead-lettered by shipping; replayed, it ships nothing.
    await replay(system, "inventory-reserved", order_id)
    await caught_up(
        system.kafka_bootstrap, system.topic("shipping"), system.topic("inventory-reserved")
    )
    shipment = await client.shipment(order_id)  # the late InventoryReserved shipped nothing
    assert shipment is not None and shipment["status"] == "FAILED"
    await ledger.assert_invariants()


async def test_a_timed_out_saga_whose_refund_is_dead_lettered_is_stuck_until_refunded(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("unrefunded", "100.00")
    sku = await ledger.sku("unrefunded", 10)
    await client.add_fault(client.urls.inventory, "permanent", count=1)

    order = await ledger.place(customer, [(sku, 2, "7.50")])
    order_id = order["order_id"]
    await timeline_with(system, order_id, "PaymentProcessed")
    # Payment gives up on whatever it reads next of this order: shipping's refusal of the
    # timed-out order, so the refund never starts by itself.
    payments = [each.url for each in instances(system.state_dir, "payment")]
    for url in payments:
        await client.add_fault(url, "permanent", order_ids=[order_id])

    assert (await timed_out(system, order_id))["cancel_reason"] == "timed_out"
    await timeline_with(system, order_id, "ShippingFailed")
    assert await dead_letters(system.kafka_bootstrap, system.topic("shipping-failed-dlq"), order_id)
    assert await client.balance(customer) == 85  # still charged
    await eventually(
        lambda: stuck_ids(system),
        lambda ids: order_id in ids,
        timeout=WAIT_S,
        what=f"timed-out order {order_id} listed as stuck while its refund is outstanding",
    )
    page = (await client.http.get(f"{client.urls.order}/ui")).text
    assert f'data-order-id="{order_id}"' in page
    assert "PaymentRefunded" in page

    for url in payments:
        (await client.http.delete(f"{url}/faults")).raise_for_status()
    await replay(system, "shipping-failed", order_id)
    await payment_status(system, order_id, "REFUNDED")
    await eventually(
        lambda: stuck_ids(system),
        lambda ids: order_id not in ids,
        timeout=WAIT_S,
        what=f"order {order_id} no longer stuck once refunded",
    )
    assert await client.balance(customer) == 100
    await ledger.assert_invariants()


async def stuck_ids(system: RunningSystem) -> set[str]:
    return {order["order_id"] for order in await system.client.orders(stuck=True, limit=500)}


async def test_a_payment_processed_after_the_timeout_is_refunded(system: RunningSystem) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("late", "100.00")
    sku = await ledger.sku("late", 10)
    # Payment charges only after the deadline; shipping's refusal comes later still, so the
    # charge is not refused beforehand; inventory dead-letters the late PaymentProcessed.
    fired = await fault_on_one_payment_instance(system, "delay", delay_ms=(DEADLINE_S + 3) * 1000)

    order = await ledger.place(customer, [(sku, 2, "7.50")])
    order_id = order["order_id"]
    await fired()
    await client.add_fault(client.urls.shipping, "delay", count=1, delay_ms=12_000)
    await client.add_fault(client.urls.inventory, "permanent", count=1)

    events = await timeline_with(system, order_id, "PaymentProcessed", "PaymentRefunded")
    cancel, charged = the(events, "OrderCancelled"), the(events, "PaymentProcessed")
    assert cancel["reason"] == "timed_out"
    assert _at(charged) > _at(cancel), "the charge was not late after all"
    await payment_status(system, order_id, "REFUNDED")
    assert await client.balance(customer) == 100
    final = await client.order(order_id)
    assert (final["status"], final["cancel_reason"]) == ("CANCELLED", "timed_out")
    await ledger.assert_invariants()


async def test_a_timed_out_saga_whose_parcel_left_first_is_completed_after_all(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("overtaken", "100.00")
    sku = await ledger.sku("overtaken", 10)
    # As above, but inventory reserves the late charge, and shipping ships it while its
    # refusal of the timed-out order is still delayed: the parcel wins.
    fired = await fault_on_one_payment_instance(system, "delay", delay_ms=(DEADLINE_S + 3) * 1000)

    order = await ledger.place(customer, [(sku, 2, "7.50")])
    order_id = order["order_id"]
    await fired()
    await client.add_fault(client.urls.shipping, "delay", count=1, delay_ms=12_000)

    events = await timeline_with(system, order_id, "OrderCancelled", "OrderCompleted")
    assert _at(the(events, "OrderShipped")) > _at(the(events, "OrderCancelled"))
    final = await client.order(order_id)
    assert (final["status"], final["cancel_reason"]) == ("COMPLETED", None)
    assert (await client.balance(customer)) == 85
    # The delayed refusal found the parcel gone and changed nothing.
    await stays(
        lambda: client.shipment(order_id),
        lambda shipment: shipment is not None and shipment["status"] == "SHIPPED",
        seconds=12,
        what="the shipment stays shipped once shipping reads the timeout",
    )
    await ledger.assert_invariants()


def _at(event: Json) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])
