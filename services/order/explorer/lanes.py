"""An order's timeline laid out as swimlanes, one per service. Pure: no I/O.

Each event sits in its producer's lane, in the column of its place in time, so reading left
to right tells the saga and reading a row tells what one service did. Compensations (a
refund, a release) and failures are marked, so a cancelled saga shows what was undone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.order.store import TimelineEntry

__all__ = ["LANES", "Kind", "Lane", "Step", "Swimlanes", "swimlanes"]

LANES = ("order", "payment", "inventory", "shipping")

_COMPENSATIONS = frozenset({"PaymentRefunded", "InventoryReleased"})
_FAILURES = frozenset({"PaymentFailed", "InventoryFailed", "ShippingFailed", "OrderCancelled"})


class Kind(StrEnum):
    """What a step means for the saga (the page colours it)."""

    forward = "forward"
    compensation = "compensation"
    failure = "failure"
    completed = "completed"


def kind_of(event_type: str) -> Kind:
    if event_type in _COMPENSATIONS:
        return Kind.compensation
    if event_type in _FAILURES:
        return Kind.failure
    if event_type == "OrderCompleted":
        return Kind.completed
    return Kind.forward


@dataclass(frozen=True)
class Step:
    """One event, where it sits and what the page says about it."""

    column: int
    event_type: str
    event_id: str
    occurred_at: datetime
    producer: str
    kind: Kind
    topic: str | None
    partition: int | None
    offset: int | None

    @property
    def position(self) -> str:
        """``topic[partition]@offset``, or a dash when the position was not recorded."""
        if self.topic is None:
            return "-"
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class Lane:
    name: str
    cells: tuple[Step | None, ...]
    """One per column: the lane's step there, or None."""


@dataclass(frozen=True)
class Swimlanes:
    lanes: tuple[Lane, ...]
    columns: int

    @property
    def compensations(self) -> int:
        return sum(
            1
            for lane in self.lanes
            for step in lane.cells
            if step and step.kind is Kind.compensation
        )


def swimlanes(entries: Sequence[TimelineEntry]) -> Swimlanes:
    """``entries`` (in the order they happened) as lanes; an unknown producer gets its own."""
    steps = [_step(column, entry) for column, entry in enumerate(entries)]
    names = list(LANES) + sorted({s.producer for s in steps} - set(LANES))
    lanes = tuple(
        Lane(name, tuple(step if step.producer == name else None for step in steps))
        for name in names
    )
    return Swimlanes(lanes, len(steps))


def _step(column: int, entry: TimelineEntry) -> Step:
    event = entry.event
    position = entry.read_from
    return Step(
        column=column,
        event_type=entry.event_type,
        event_id=str(event["event_id"]),
        occurred_at=datetime.fromisoformat(str(event["occurred_at"])),
        producer=str(event["producer"]),
        kind=kind_of(entry.event_type),
        topic=position.topic if position else None,
        partition=position.partition if position else None,
        offset=position.offset if position else None,
    )
