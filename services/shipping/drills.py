"""Failure injection for shipping: what the ``fail`` fault makes of a shipment.

Not a business rule: the bootstrap puts it in front of the shipment rule when failure
injection is on (``shared.consuming.faults.business_fault``).
"""

from services.events import InventoryReserved
from services.shipping.model import ShipmentDecision, ShipmentStatus
from shared.consuming.faults import BusinessFault

__all__ = ["FAIL", "INJECTED_FAILURE", "failed"]

FAIL = BusinessFault("fail")
"""The fault kind shipping accepts: the shipment fails."""

INJECTED_FAILURE = "injected_failure"
"""The ``reason`` of a shipment the fault failed."""


def failed(event: InventoryReserved) -> ShipmentDecision:
    """The shipment of ``event`` failed, with no tracking id."""
    return ShipmentDecision(ShipmentStatus.FAILED, None, INJECTED_FAILURE)
