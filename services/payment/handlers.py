"""Payment's reactions: charge a new order, refund when a later step of the saga fails."""

from __future__ import annotations

from services.payment import store
from services.payment.model import (
    apply_refund,
    decide_charge,
    decide_refund,
    should_charge,
)
from shared.db import UnitOfWork
from shared.errors import PermanentError
from shared.events import (
    InventoryFailed,
    OrderCreated,
    PaymentFailed,
    PaymentProcessed,
    PaymentRefunded,
    ShippingFailed,
)
from shared.faults import FaultKind, FaultRegistry

__all__ = ["charge", "refund"]

PRODUCER = "payment"


async def charge(event: OrderCreated, uow: UnitOfWork, faults: FaultRegistry) -> None:
    """Take the order's total from the customer's balance, or decline with a reason."""
    existing = await store.get_payment(uow.session, event.order_id)
    if not should_charge(existing.status if existing else None):
        return
    balance = await store.lock_balance(uow.session, event.customer_id)
    injected = faults.take(FaultKind.decline, event.order_id) is not None
    decision = decide_charge(balance, event.total, injected_decline=injected)
    payment = store.Payment(
        event.order_id, event.customer_id, event.total, decision.status, decision.reason
    )
    # The check above is only a shortcut: a copy of the event handled at the same moment
    # (another event id, so the inbox lets it through) loses here and changes nothing.
    if not await store.add_payment(uow.session, payment):
        return
    if decision.charged and decision.new_balance is not None:
        await store.set_balance(uow.session, event.customer_id, decision.new_balance)
        items = [{"sku": line.sku, "quantity": line.quantity} for line in event.items]
        uow.emit(
            PaymentProcessed.caused_by(
                event,
                producer=PRODUCER,
                customer_id=event.customer_id,
                amount=event.total,
                items=items,
            )
        )
    else:
        uow.emit(
            PaymentFailed.caused_by(
                event,
                producer=PRODUCER,
                customer_id=event.customer_id,
                amount=event.total,
                reason=str(decision.reason),
            )
        )


async def refund(event: InventoryFailed | ShippingFailed, uow: UnitOfWork) -> None:
    """Give a charged order's money back; anything else has nothing to refund."""
    payment = await store.get_payment(uow.session, event.order_id, lock=True)
    if payment is None or not decide_refund(payment.status):
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
