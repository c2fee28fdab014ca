"""Failure injection for inventory: what the ``out_of_stock`` fault makes of a reservation.

Not a business rule: the bootstrap puts it in front of the reservation rule when failure
injection is on (``shared.consuming.faults.business_fault``).
"""

from collections.abc import Mapping

from services.events import PaymentProcessed
from services.inventory.model import (
    FailureReason,
    ReservationResult,
    ReservationStatus,
    StockLevel,
)
from shared.consuming.faults import BusinessFault

__all__ = ["OUT_OF_STOCK", "out_of_stock"]

OUT_OF_STOCK = BusinessFault("out_of_stock")
"""The fault kind inventory accepts: the reservation fails."""


def out_of_stock(
    event: PaymentProcessed, levels: Mapping[str, StockLevel | None]
) -> ReservationResult:
    """The reservation of ``event`` failed as out of stock, every sku of it, whatever the stock.

    It reads as a real shortage (same reason), so the saga compensates exactly as it would.
    """
    skus = tuple(dict.fromkeys(line.sku for line in event.items))
    return ReservationResult(
        ReservationStatus.FAILED, reason=FailureReason.out_of_stock, failed_skus=skus
    )
