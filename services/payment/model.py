"""Payment rules: when a charge goes through, what it leaves, when a refund is due. Pure: no I/O.

A payment of an order moves at most twice: it is created ``CHARGED`` or ``DECLINED``, and
only a ``CHARGED`` payment may become ``REFUNDED``. Balances are returned as new values; the
caller stores them.
"""

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from shared.contracts.money import to_money

__all__ = [
    "ChargeDecision",
    "DeclineReason",
    "PaymentStatus",
    "apply_charge",
    "apply_refund",
    "decide_charge",
    "decide_refund",
    "should_charge",
    "void_payment",
]


class PaymentStatus(StrEnum):
    """The state of an order's payment."""

    CHARGED = "CHARGED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


class DeclineReason(StrEnum):
    """Why a charge was declined (the ``reason`` of ``PaymentFailed``).

    ``order_cancelled`` is no charge's reason: it marks the payment of an order whose
    compensation came before its charge (``void_payment``), so the charge never happens.
    """

    insufficient_funds = "insufficient_funds"
    unknown_customer = "unknown_customer"
    order_cancelled = "order_cancelled"


@dataclass(frozen=True)
class ChargeDecision:
    """The outcome of a charge: ``CHARGED`` with the new balance, or ``DECLINED`` with a reason.

    A declined charge leaves the balance as it was (``new_balance`` is that balance, or None
    for an unknown customer). ``reason`` is a ``DeclineReason`` when these rules declined.
    """

    status: PaymentStatus
    reason: str | None
    new_balance: Decimal | None

    @property
    def charged(self) -> bool:
        """True when the money was taken."""
        return self.status is PaymentStatus.CHARGED


def should_charge(existing: PaymentStatus | None) -> bool:
    """Whether an order may be charged: only if it has no payment yet, whatever its status.

    A redelivered or duplicated ``OrderCreated`` therefore never charges twice.
    """
    return existing is None


def decide_charge(balance: Decimal | None, amount: Decimal) -> ChargeDecision:
    """Decide whether ``amount`` can be charged to an account holding ``balance``.

    ``balance`` None means the customer is unknown. A charge larger than the balance is
    declined (``insufficient_funds``); a charge equal to it is fine. Raises ``ValueError``
    when ``amount`` is not a valid amount of money.
    """
    amount = to_money(amount)
    if balance is None:
        return _declined(DeclineReason.unknown_customer, None)
    if amount > balance:
        return _declined(DeclineReason.insufficient_funds, balance)
    return ChargeDecision(PaymentStatus.CHARGED, None, apply_charge(balance, amount))


def apply_charge(balance: Decimal, amount: Decimal) -> Decimal:
    """The balance after taking ``amount``; ``ValueError`` if it does not cover it."""
    amount = to_money(amount)
    if amount > balance:
        raise ValueError(f"a balance of {balance} cannot cover a charge of {amount}")
    return balance - amount


def decide_refund(payment_status: PaymentStatus | None) -> bool:
    """Whether a payment is to be refunded: only a ``CHARGED`` one.

    Refunding a ``DECLINED``, ``REFUNDED`` or absent payment is a no-op, so a late, repeated
    or misdirected compensation event never gives money back twice.
    """
    return payment_status is PaymentStatus.CHARGED


def void_payment() -> ChargeDecision:
    """What a refund request finds to do for an order with no payment yet: decline it now.

    Inventory and shipping fail an order only after it was charged, except when the order
    service cancelled it first (a timed-out saga, docs/events.md): then the refund request
    can overtake the ``OrderCreated`` it compensates. Recording the payment as ``DECLINED``
    makes ``should_charge`` refuse that late ``OrderCreated``, so nothing is ever charged.
    """
    return ChargeDecision(PaymentStatus.DECLINED, DeclineReason.order_cancelled, None)


def apply_refund(balance: Decimal, amount: Decimal) -> Decimal:
    """The balance after giving ``amount`` back."""
    return balance + to_money(amount)


def _declined(reason: DeclineReason, balance: Decimal | None) -> ChargeDecision:
    return ChargeDecision(PaymentStatus.DECLINED, reason, balance)
