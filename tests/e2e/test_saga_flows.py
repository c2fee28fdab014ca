"""The saga flows of docs/events.md, each driven over HTTP and checked in every service."""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import Ledger, settled_stock, settled_timeline, wait_terminal

Json = dict[str, Any]


def event_types(timeline: list[Json]) -> list[str]:
    return [event["event_type"] for event in timeline]


def at(event: Json) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def the(timeline: list[Json], event_type: str) -> Json:
    """The one event of ``event_type`` in the timeline."""
    found = [event for event in timeline if event["event_type"] == event_type]
    assert len(found) == 1, f"{len(found)} {event_type} in {event_types(timeline)}"
    return found[0]


async def test_an_order_with_funds_and_stock_is_charged_shipped_and_completed(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    alice = await ledger.customer("alice", "100.00")
    mug = await ledger.sku("mug", 10)

    order = await ledger.place(alice, [(mug, 2, "12.50")])

    assert (order["status"], order["total"]) == ("PENDING", "25.00")
    done = await wait_terminal(client, order["order_id"])
    assert (done["status"], done["cancel_reason"]) == ("COMPLETED", None)
    assert await client.balance(alice) == Decimal("75.00")
    assert await settled_stock(client, mug) == {
        "sku": mug,
        "available": 8,
        "reserved": 0,
        "shipped": 2,
    }
    payment = await client.payment(order["order_id"])
    assert payment is not None
    assert (payment["status"], payment["amount"]) == ("CHARGED", "25.00")
    shipment = await client.shipment(order["order_id"])
    assert shipment is not None
    assert shipment["status"] == "SHIPPED"
    assert shipment["tracking_id"]
    await ledger.assert_invariants()


async def test_a_completed_order_s_timeline_is_one_causal_chain(system: RunningSystem) -> None:
    client, ledger = system.client, Ledger(system.client)
    bob = await ledger.customer("bob", "50.00")
    lamp = await ledger.sku("lamp", 3)
    order = await ledger.place(bob, [(lamp, 1, "20.00")])
    await wait_terminal(client, order["order_id"])

    timeline = await settled_timeline(client, order["order_id"])

    assert event_types(timeline) == [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryReserved",
        "OrderShipped",
        "OrderCompleted",
    ]
    assert [event["producer"] for event in timeline] == [
        "order",
        "payment",
        "inventory",
        "shipping",
        "order",
    ]
    assert timeline[0]["causation_id"] is None
    for cause, effect in itertools.pairwise(timeline):
        assert effect["causation_id"] == cause["event_id"], (cause, effect)
    assert {event["correlation_id"] for event in timeline} == {order["order_id"]}
    assert {event["order_id"] for event in timeline} == {order["order_id"]}
    shipment = await client.shipment(order["order_id"])
    assert shipment is not None
    assert the(timeline, "OrderShipped")["tracking_id"] == shipment["tracking_id"]
    assert the(timeline, "OrderCompleted")["total"] == "20.00"


async def test_a_charge_above_the_balance_is_declined_and_cancels_the_order(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    carol = await ledger.customer("carol", "5.00")
    pen = await ledger.sku("pen", 10)

    order = await ledger.place(carol, [(pen, 1, "20.00")])

    done = await wait_terminal(client, order["order_id"])
    assert (done["status"], done["cancel_reason"]) == ("CANCELLED", "payment_declined")
    payment = await client.payment(order["order_id"])
    assert payment is not None
    assert (payment["status"], payment["reason"]) == ("DECLINED", "insufficient_funds")
    assert await client.balance(carol) == Decimal("5.00")
    assert await client.stock(pen) == {"sku": pen, "available": 10, "reserved": 0, "shipped": 0}
    assert await client.shipment(order["order_id"]) is None
    timeline = await settled_timeline(client, order["order_id"])
    assert event_types(timeline) == ["OrderCreated", "PaymentFailed", "OrderCancelled"]
    assert the(timeline, "PaymentFailed")["reason"] == "insufficient_funds"
    assert the(timeline, "OrderCancelled")["reason"] == "payment_declined"
    await ledger.assert_invariants()


async def test_an_unknown_customer_is_declined(system: RunningSystem) -> None:
    client, ledger = system.client, Ledger(system.client)
    nobody = await ledger.customer("nobody", balance=None)
    pen = await ledger.sku("pen", 10)

    order = await ledger.place(nobody, [(pen, 1, "1.00")])

    done = await wait_terminal(client, order["order_id"])
    assert (done["status"], done["cancel_reason"]) == ("CANCELLED", "payment_declined")
    payment = await client.payment(order["order_id"])
    assert payment is not None
    assert (payment["status"], payment["reason"]) == ("DECLINED", "unknown_customer")
    timeline = await settled_timeline(client, order["order_id"])
    assert the(timeline, "PaymentFailed")["reason"] == "unknown_customer"
    await ledger.assert_invariants()


async def test_out_of_stock_refunds_the_payment_and_leaves_the_stock_alone(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    dave = await ledger.customer("dave", "100.00")
    desk = await ledger.sku("desk", 1)

    order = await ledger.place(dave, [(desk, 3, "10.00")])

    done = await wait_terminal(client, order["order_id"])
    assert (done["status"], done["cancel_reason"]) == ("CANCELLED", "out_of_stock")
    assert await client.balance(dave) == Decimal("100.00")
    payment = await client.payment(order["order_id"])
    assert payment is not None
    assert (payment["status"], payment["amount"]) == ("REFUNDED", "30.00")
    assert await client.stock(desk) == {"sku": desk, "available": 1, "reserved": 0, "shipped": 0}
    assert await client.shipment(order["order_id"]) is None
    timeline = await settled_timeline(client, order["order_id"])
    assert event_types(timeline) == [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryFailed",
        "PaymentRefunded",
        "OrderCancelled",
    ]
    assert (
        the(timeline, "InventoryFailed")["reason"],
        the(timeline, "InventoryFailed")["sku"],
    ) == (
        "out_of_stock",
        desk,
    )
    await ledger.assert_invariants()


async def test_an_order_with_one_line_short_reserves_none_of_its_lines(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    erin = await ledger.customer("erin", "100.00")
    plenty = await ledger.sku("plenty", 10)
    scarce = await ledger.sku("scarce", 1)

    order = await ledger.place(erin, [(plenty, 2, "1.00"), (scarce, 2, "1.00")])

    done = await wait_terminal(client, order["order_id"])
    assert (done["status"], done["cancel_reason"]) == ("CANCELLED", "out_of_stock")
    assert await client.stock(plenty) == {
        "sku": plenty,
        "available": 10,
        "reserved": 0,
        "shipped": 0,
    }
    await ledger.assert_invariants()


async def test_an_unknown_sku_fails_the_reservation_and_refunds_the_payment(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    frank = await ledger.customer("frank", "100.00")
    ghost = await ledger.sku("ghost", units=None)

    order = await ledger.place(frank, [(ghost, 1, "10.00")])

    done = await wait_terminal(client, order["order_id"])
    assert (done["status"], done["cancel_reason"]) == ("CANCELLED", "out_of_stock")
    assert await client.balance(frank) == Decimal("100.00")
    payment = await client.payment(order["order_id"])
    assert payment is not None
    assert payment["status"] == "REFUNDED"
    timeline = await settled_timeline(client, order["order_id"])
    assert the(timeline, "InventoryFailed")["reason"] == "unknown_sku"
    await ledger.assert_invariants()  # the sku is still unknown: 404


async def test_a_failed_shipment_releases_the_stock_and_refunds_before_cancelling(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    grace = await ledger.customer("grace", "100.00")
    chair = await ledger.sku("chair", 5)
    # Placed before the order, whose id is not known yet: the next shipment fails.
    await client.add_fault(client.urls.shipping, "fail", count=1)

    order = await ledger.place(grace, [(chair, 2, "15.00")])

    done = await wait_terminal(client, order["order_id"])
    assert (done["status"], done["cancel_reason"]) == ("CANCELLED", "shipping_failed")
    shipment = await client.shipment(order["order_id"])
    assert shipment is not None
    assert (shipment["status"], shipment["tracking_id"]) == ("FAILED", None)
    assert await client.balance(grace) == Decimal("100.00")
    payment = await client.payment(order["order_id"])
    assert payment is not None
    assert payment["status"] == "REFUNDED"
    assert await settled_stock(client, chair) == {
        "sku": chair,
        "available": 5,
        "reserved": 0,
        "shipped": 0,
    }
    timeline = await settled_timeline(client, order["order_id"])
    assert event_types(timeline)[:4] == [
        "OrderCreated",
        "PaymentProcessed",
        "InventoryReserved",
        "ShippingFailed",
    ]
    # CANCELLED only once both compensations are confirmed: the cancellation comes after
    # both, and was caused by whichever of the two arrived last.
    names = event_types(timeline)
    assert sorted(names[4:6]) == ["InventoryReleased", "PaymentRefunded"]
    assert names[6:] == ["OrderCancelled"]
    released, refunded = the(timeline, "InventoryReleased"), the(timeline, "PaymentRefunded")
    cancelled = the(timeline, "OrderCancelled")
    assert cancelled["causation_id"] in (released["event_id"], refunded["event_id"])
    assert at(cancelled) >= max(at(released), at(refunded))
    assert cancelled["reason"] == "shipping_failed"
    await ledger.assert_invariants()
