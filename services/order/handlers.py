"""Order's reactions: move each order's saga forward, and keep the timeline read model."""

from __future__ import annotations

from services.order import store
from services.order.model import OrderStatus, SagaFact, fact_for
from shared.db import UnitOfWork
from shared.errors import PermanentError
from shared.events import CATALOGUE, Event, OrderCancelled, OrderCompleted

__all__ = ["OUTCOMES", "advance_saga", "record_in_timeline"]


PRODUCER = "order"

# The events that move an order's saga: one per saga fact (everything the other services
# report), taken from the catalogue so the two lists cannot drift apart.
OUTCOMES: tuple[type[Event], ...] = tuple(
    event_type for event_type in CATALOGUE if fact_for(event_type.type_name()) is not None
)


async def advance_saga(event: Event, uow: UnitOfWork) -> None:
    """Record the outcome in the order's saga; announce the end when it just ended."""
    order = await store.get_order(uow.session, event.order_id, lock=True)
    if order is None:
        # Orders are written before their OrderCreated leaves the outbox, so this is an
        # event for an order this database never had: no retry will find it.
        raise PermanentError(f"no order {event.order_id!r} for {event.event_type}")
    saga = order.saga
    transition = saga.record(SagaFact(event.event_type))
    if transition.duplicate or transition.absorbed:
        return
    await store.save_saga(uow.session, order.order_id, saga)
    if not transition.became_terminal:
        return
    if saga.status is OrderStatus.COMPLETED:
        uow.emit(
            OrderCompleted.caused_by(
                event, producer=PRODUCER, customer_id=order.customer_id, total=order.total
            )
        )
    else:
        uow.emit(OrderCancelled.caused_by(event, producer=PRODUCER, reason=str(saga.cancel_reason)))


async def record_in_timeline(event: Event, uow: UnitOfWork) -> None:
    """Add any event of the saga to the read model that ``GET /orders/{id}/timeline`` serves."""
    await store.add_to_timeline(uow.session, event)
