"""Payment's reactions: charge a new order, refund when a later step of the saga fails."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from services.events import (
    InventoryFailed,
    OrderCreated,
    PaymentFailed,
    PaymentProcessed,
    PaymentRefunded,
    ShippingFailed,
)
from services.payment import store
from services.payment.model import (
    ChargeDecision,
    apply_refund,
    decide_charge,
    decide_refund,
    should_charge,
    void_payment,
)
from shared.contracts.errors import PermanentError, TransientError
from shared.contracts.events import Event
from shared.contracts.money import ZERO
from shared.storage.db import UnitOfWork

__all__ = ["ChargeRule", "charge", "charge_rule", "refund"]

PRODUCER = "payment"

ChargeRule = Callable[[OrderCreated, Decimal | None], ChargeDecision]
"""How a new order is decided, given its customer's balance (None: unknown customer)."""


def charge_rule(event: OrderCreated, balance: Decimal | None) -> ChargeDecision:
    """The business rule: charge the order's total if the balance covers it."""
    return decide_charge(balance, event.total)


async def charge(
    events: Sequence[OrderCreated], uow: UnitOfWork, decide: ChargeRule = charge_rule
) -> None:
    """Take each new order's total from its customer's balance, or decline it with a reason.

    Reads the orders' payments and locks their customers' balances in one statement each,
    decides order by order with ``decide`` (a customer's second order sees the balance the
    first one left), and writes the payments and balances in one statement each.
    """
    session = uow.session
    known = await store.payment_statuses(session, [event.order_id for event in events])
    balances = await store.lock_balances(session, {event.customer_id for event in events})
    decided: list[store.Payment] = []
    charged: dict[str, Decimal] = {}
    for event in events:
        if not should_charge(known.get(event.order_id)):
            continue
        decision = decide(event, balances.get(event.customer_id))
        known[event.order_id] = decision.status
        decided.append(
            store.Payment(
                event.order_id, event.customer_id, event.total, decision.status, decision.reason
            )
        )
        if decision.charged and decision.new_balance is not None:
            balances[event.customer_id] = charged[event.customer_id] = decision.new_balance
        uow.emit(_outcome(event, decision))
    recorded = await store.add_payments(session, decided)
    if len(recorded) < len(decided):
        # A copy of an order's event (another event id, so the inbox let it through) was
        # handled at the same moment and recorded its payment first: do none of this, so
        # that the retry sees that payment and charges nothing twice.
        raise TransientError("an order's payment was recorded meanwhile by another delivery")
    await store.update_balances(session, charged)


def _outcome(event: OrderCreated, decision: ChargeDecision) -> Event:
    """``PaymentProcessed`` or ``PaymentFailed`` for the decision on ``event``."""
    if decision.charged:
        items = [{"sku": line.sku, "quantity": line.quantity} for line in event.items]
        return PaymentProcessed.caused_by(
            event,
            producer=PRODUCER,
            customer_id=event.customer_id,
            amount=event.total,
            items=items,
        )
    return PaymentFailed.caused_by(
        event,
        producer=PRODUCER,
        customer_id=event.customer_id,
        amount=event.total,
        reason=str(decision.reason),
    )


async def refund(event: InventoryFailed | ShippingFailed, uow: UnitOfWork) -> None:
    """Give a charged order's money back; a declined or refunded one has nothing to refund.

    An order with no payment yet is voided (``void_payment``): its ``OrderCreated``, should it
    come later, charges nothing.
    """
    payment = await store.get_payment(uow.session, event.order_id, lock=True)
    if payment is None:
        await _void(event.order_id, uow)
        return
    if not decide_refund(payment.status):
        return
    balance = await store.lock_balance(uow.session, payment.customer_id)
    if balance is None:
        raise PermanentError(f"account {payment.customer_id!r} of a charged payment is gone")
    await store.set_balance(uow.session, payment.customer_id, apply_refund(balance, payment.amount))
    await store.mark_refunded(uow.session, payment.order_id)
    uow.emit(
        PaymentRefunded.caused_by(
            event, producer=PRODUCER, customer_id=payment.customer_id, amount=payment.amount
        )
    )


async def _void(order_id: str, uow: UnitOfWork) -> None:
    decision = void_payment()
    # Nobody to charge and nothing charged: the order's customer and total came with the
    # OrderCreated this request overtook, and are not needed to refuse it.
    voided = store.Payment(order_id, "", ZERO, decision.status, decision.reason)
    if not await store.add_payments(uow.session, [voided]):
        # The order was charged at this very moment (the insert waited for that commit):
        # start again, and the retry refunds that charge.
        raise TransientError("the order's payment was recorded meanwhile")
