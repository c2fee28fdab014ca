"""An order's timeline as swimlanes (services.order.explorer.lanes)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.order.explorer.lanes import Kind, swimlanes
from services.order.store import TimelineEntry
from shared.storage.db import ReadFrom

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def entry(
    n: int, event_type: str, producer: str, read_from: ReadFrom | None = None
) -> TimelineEntry:
    event = {
        "event_type": event_type,
        "event_id": str(uuid.uuid4()),
        "occurred_at": (START + timedelta(seconds=n)).isoformat(),
        "producer": producer,
    }
    return TimelineEntry(event, read_from)


SHIPPING_FAILED = [
    entry(0, "OrderCreated", "order", ReadFrom("order-created", 2, 7)),
    entry(1, "PaymentProcessed", "payment"),
    entry(2, "InventoryReserved", "inventory"),
    entry(3, "ShippingFailed", "shipping"),
    entry(4, "InventoryReleased", "inventory"),
    entry(5, "PaymentRefunded", "payment"),
    entry(6, "OrderCancelled", "order"),
]


def test_each_event_sits_in_its_producers_lane_in_its_column_of_time() -> None:
    lanes = swimlanes(SHIPPING_FAILED)
    assert lanes.columns == 7
    assert [lane.name for lane in lanes.lanes] == ["order", "payment", "inventory", "shipping"]
    placed = {
        lane.name: [(s.column, s.event_type) for s in lane.cells if s] for lane in lanes.lanes
    }
    assert placed == {
        "order": [(0, "OrderCreated"), (6, "OrderCancelled")],
        "payment": [(1, "PaymentProcessed"), (5, "PaymentRefunded")],
        "inventory": [(2, "InventoryReserved"), (4, "InventoryReleased")],
        "shipping": [(3, "ShippingFailed")],
    }
    assert all(len(lane.cells) == 7 for lane in lanes.lanes)


def test_compensations_and_failures_are_marked() -> None:
    lanes = swimlanes(SHIPPING_FAILED)
    kinds = {s.event_type: s.kind for lane in lanes.lanes for s in lane.cells if s}
    assert lanes.compensations == 2
    assert kinds["PaymentRefunded"] is kinds["InventoryReleased"] is Kind.compensation
    assert kinds["ShippingFailed"] is kinds["OrderCancelled"] is Kind.failure
    assert kinds["PaymentProcessed"] is Kind.forward


def test_a_step_shows_where_it_was_read_when_that_is_known() -> None:
    order_lane = swimlanes(SHIPPING_FAILED).lanes[0]
    created, cancelled = (s for s in order_lane.cells if s)
    assert created.position == "order-created[2]@7"
    assert cancelled.position == "-"


def test_an_unknown_producer_gets_a_lane_of_its_own() -> None:
    lanes = swimlanes([entry(0, "OrderCreated", "order"), entry(1, "OrderCreated", "importer")])
    assert [lane.name for lane in lanes.lanes][-1] == "importer"
