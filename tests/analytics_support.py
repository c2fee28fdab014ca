"""Order sagas as the analytics service sees them: the events of one order, made up for a test
with the times and outcome it needs."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from services.events import (
    LineItem,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    PaymentFailed,
    PaymentProcessed,
    PricedLineItem,
)

__all__ = ["saga"]


def saga(
    order_id: str,
    start: datetime,
    took: timedelta,
    *,
    total: str = "10.00",
    cancelled: str | None = None,
) -> list[OrderEvent]:
    """The events of an order created at ``start`` and ended ``took`` later: completed, or
    cancelled for the reason ``cancelled``; a payment between the two."""
    amount = Decimal(total)
    item = PricedLineItem(sku="sku-1", quantity=1, unit_price=amount)
    placed = OrderCreated.first(
        order_id=order_id,
        producer="test",
        occurred_at=start,
        customer_id="c-1",
        items=(item,),
        total=amount,
    )
    at = start + took / 2
    end = start + took
    if cancelled is None:
        paid = PaymentProcessed.caused_by(
            placed,
            producer="test",
            occurred_at=at,
            customer_id="c-1",
            amount=amount,
            items=(LineItem(sku="sku-1", quantity=1),),
        )
        done = OrderCompleted.caused_by(
            paid, producer="test", occurred_at=end, customer_id="c-1", total=amount
        )
        return [placed, paid, done]
    failed = PaymentFailed.caused_by(
        placed, producer="test", occurred_at=at, customer_id="c-1", amount=amount, reason=cancelled
    )
    return [
        placed,
        failed,
        OrderCancelled.caused_by(failed, producer="test", occurred_at=end, reason=cancelled),
    ]
