"""Shipping rules: a shipment per order, shipped with a stable tracking id or failed. Pure.

There is no real carrier: every parcel leaves with ``HOUSE_CARRIER``, so the rules always
ship; a shipment fails only through failure injection (services/shipping/drills.py), which
the saga then compensates. A redelivered ``InventoryReserved`` must not ship twice, and if it
is handled again anyway (say after a crash before the offset commit) it yields the same
tracking id.
"""

import hashlib
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "HOUSE_CARRIER",
    "FailureReason",
    "ShipmentDecision",
    "ShipmentStatus",
    "decide_shipment",
    "refuse_shipment",
    "should_ship",
    "tracking_id_for",
]

HOUSE_CARRIER = "sagakit-courier"
"""The carrier ``OrderShipped`` names (version 2 of the event names one; version 1 did not)."""


class ShipmentStatus(StrEnum):
    """The state of an order's shipment."""

    SHIPPED = "SHIPPED"
    FAILED = "FAILED"


class FailureReason(StrEnum):
    """Why the rules fail a shipment (the ``reason`` of ``ShippingFailed``).

    ``order_cancelled``: the order service cancelled the order (its saga timed out) before
    this shipment was asked for, so it never will be (docs/events.md, "Deadlines").
    """

    order_cancelled = "order_cancelled"


@dataclass(frozen=True)
class ShipmentDecision:
    """``SHIPPED`` with a tracking id, or ``FAILED`` with a reason."""

    status: ShipmentStatus
    tracking_id: str | None
    reason: str | None

    @property
    def shipped(self) -> bool:
        """True when the parcel left."""
        return self.status is ShipmentStatus.SHIPPED


def tracking_id_for(order_id: str) -> str:
    """The tracking id of an order's parcel: ``"TRK-"`` and 10 upper-case hex digits.

    Derived from the order id (sha256), so handling the same order again gives the same id.
    """
    return "TRK-" + hashlib.sha256(order_id.encode()).hexdigest()[:10].upper()


def should_ship(existing: ShipmentStatus | None) -> bool:
    """Whether an order may be shipped: only if it has no shipment yet (shipped or failed)."""
    return existing is None


def refuse_shipment() -> ShipmentDecision:
    """The shipment of an order cancelled before it shipped: ``FAILED``, for good."""
    return ShipmentDecision(ShipmentStatus.FAILED, None, FailureReason.order_cancelled)


def decide_shipment(order_id: str) -> ShipmentDecision:
    """Ship the order, with its tracking id."""
    return ShipmentDecision(ShipmentStatus.SHIPPED, tracking_id_for(order_id), None)
