"""Shipping rules: a shipment per order, shipped with a stable tracking id or failed. Pure.

There is no real carrier: every parcel leaves with ``HOUSE_CARRIER``, and a shipment fails
only when the ``fail`` fault fires (contract section 3). A redelivered ``InventoryReserved``
must not ship twice, and if it is handled again anyway (say after a crash before the offset
commit) it yields the same tracking id.
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
    """Why a shipment failed (the ``reason`` of ``ShippingFailed``).

    ``injected_failure``: the ``fail`` fault fired.
    """

    injected_failure = "injected_failure"


@dataclass(frozen=True)
class ShipmentDecision:
    """``SHIPPED`` with a tracking id, or ``FAILED`` with a reason."""

    status: ShipmentStatus
    tracking_id: str | None
    reason: FailureReason | None

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


def decide_shipment(order_id: str, *, injected_failure: bool = False) -> ShipmentDecision:
    """Ship the order, unless ``injected_failure`` (the ``fail`` fault fired) fails it."""
    if injected_failure:
        return ShipmentDecision(ShipmentStatus.FAILED, None, FailureReason.injected_failure)
    return ShipmentDecision(ShipmentStatus.SHIPPED, tracking_id_for(order_id), None)
