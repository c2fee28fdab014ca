"""Failure injection for payment: what the ``decline`` fault makes of a charge.

Not a business rule: the bootstrap puts it in front of the charge rule when failure injection
is on (``shared.consuming.faults.business_fault``), and a deployment without it never imports it.
"""

from decimal import Decimal

from services.events import OrderCreated
from services.payment.model import ChargeDecision, PaymentStatus
from shared.consuming.faults import BusinessFault

__all__ = ["DECLINE", "INJECTED_DECLINE", "declined"]

DECLINE = BusinessFault("decline")
"""The fault kind payment accepts: the charge is declined."""

INJECTED_DECLINE = "injected_decline"
"""The ``reason`` of a decline the fault forced, so dashboards and tests tell a drill from a
real decline."""


def declined(event: OrderCreated, balance: Decimal | None) -> ChargeDecision:
    """The charge of ``event`` declined whatever the balance, which stays as it was."""
    return ChargeDecision(PaymentStatus.DECLINED, INJECTED_DECLINE, balance)
