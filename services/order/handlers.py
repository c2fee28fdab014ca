"""Order's reactions: move each order's saga forward, and keep the timeline read model."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.events import CATALOGUE, OrderCancelled, OrderCompleted, OrderEvent
from services.order import store
from services.order.model import CancelReason, OrderStatus, Saga, SagaFact, fact_for
from shared.contracts.errors import PermanentError
from shared.storage.db import UnitOfWork

__all__ = ["OUTCOMES", "advance_sagas", "record_in_timeline"]

log = logging.getLogger(__name__)


PRODUCER = "order"

# The events that move an order's saga: one per saga fact (everything the other services
# report), taken from the catalogue so the two lists cannot drift apart.
OUTCOMES: tuple[type[OrderEvent], ...] = tuple(
    event_type for event_type in CATALOGUE if fact_for(event_type.type_name()) is not None
)


async def advance_sagas(events: Sequence[OrderEvent], uow: UnitOfWork) -> None:
    """Record each outcome in its order's saga; announce the end of the sagas that just ended.

    One statement locks every order of the run (in order-id order, so concurrent runs wait
    for each other instead of deadlocking), one writes the sagas that moved.
    """
    orders = await store.lock_orders(uow.session, {event.order_id for event in events})
    sagas = {order_id: order.saga for order_id, order in orders.items()}
    moved: set[str] = set()
    for event in events:
        order = orders.get(event.order_id)
        if order is None:
            # Orders are written before their OrderCreated leaves the outbox, so this is an
            # event for an order this database never had: no retry will find it.
            raise PermanentError(f"no order {event.order_id!r} for {event.event_type}")
        saga = sagas[order.order_id]
        transition = saga.record(SagaFact(event.event_type))
        # A timed-out saga keeps its later facts: they tell which compensations are still
        # outstanding (``Saga.outstanding_compensations``), and so whether it is stuck.
        keeps_facts = order.cancel_reason is CancelReason.timed_out
        if transition.duplicate or (transition.absorbed and not keeps_facts):
            continue
        moved.add(order.order_id)
        if transition.became_terminal:
            if transition.previous_status.is_terminal:
                log.warning(
                    "order %s timed out, but its parcel had already shipped: COMPLETED after all",
                    order.order_id,
                )
            uow.emit(_announcement(event, order, saga))
    await store.save_sagas(uow.session, {order_id: sagas[order_id] for order_id in moved})


def _announcement(event: OrderEvent, order: store.Order, saga: Saga) -> OrderEvent:
    """``OrderCompleted`` or ``OrderCancelled``, caused by the event that ended the saga."""
    if saga.status is OrderStatus.COMPLETED:
        return OrderCompleted.caused_by(
            event, producer=PRODUCER, customer_id=order.customer_id, total=order.total
        )
    return OrderCancelled.caused_by(event, producer=PRODUCER, reason=str(saga.cancel_reason))


async def record_in_timeline(events: Sequence[OrderEvent], uow: UnitOfWork) -> None:
    """Add the saga's events to the read model ``GET /orders/{id}/timeline`` serves."""
    await store.add_to_timeline(uow.session, events, uow.read_from)
