"""Notification's reactions: record one notification per customer and event, to be delivered
by the deliverer (services/notification/delivery.py); learn each order's customer from its
``OrderCreated``, since ``OrderCancelled`` does not name it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.events import (
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderEvent,
    PaymentRefunded,
)
from services.notification import store
from services.notification.model import describe, first_status
from shared.storage.db import UnitOfWork

__all__ = ["learn_customers", "notify"]

Notified = OrderCompleted | OrderCancelled | PaymentRefunded


async def learn_customers(
    events: Sequence[OrderCreated], uow: UnitOfWork, *, webhook: bool
) -> None:
    """Remember whose orders they are, and hand each customer the order's notifications that
    waited for it (an ``OrderCancelled`` read before its ``OrderCreated``).

    The group's transactions run one at a time (the platform's group lock), so a cancel
    recorded as waiting is committed before this looks for it, or sees the customer itself.
    """
    await store.remember_customers(uow.session, {e.order_id: e.customer_id for e in events})
    status = first_status(customer_known=True, webhook=webhook)
    await store.assign_customers(uow.session, [e.order_id for e in events], status)


async def notify(events: Sequence[Notified], uow: UnitOfWork, *, webhook: bool) -> None:
    """One notification for each event's customer; a copy of an event (same event id) adds
    none. Two statements for any number of events: the customers of the cancelled orders
    (``OrderCancelled`` does not name its customer), then every notification."""
    cancelled = [e.order_id for e in events if isinstance(e, OrderCancelled)]
    known = await store.customers_of(uow.session, cancelled) if cancelled else {}
    new = []
    for event in events:
        if isinstance(event, OrderCancelled):
            customer = known.get(event.order_id)
        else:
            customer = event.customer_id
        details = _details(event)
        new.append(
            store.NewNotification(
                event_id=str(event.event_id),
                event_type=event.event_type,
                order_id=event.order_id,
                customer_id=customer,
                text=describe(event.event_type, event.order_id, details),
                details=details,
                occurred_at=event.occurred_at,
                status=first_status(customer_known=customer is not None, webhook=webhook),
            )
        )
    await store.add_notifications(uow.session, new)


def _details(event: OrderEvent) -> Mapping[str, str]:
    """What the customer is told besides the order: the total, the reason, the amount."""
    if isinstance(event, OrderCompleted):
        return {"total": str(event.total)}
    if isinstance(event, OrderCancelled):
        return {"reason": event.reason}
    if isinstance(event, PaymentRefunded):
        return {"amount": str(event.amount)}
    return {}
