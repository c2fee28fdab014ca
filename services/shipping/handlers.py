"""Shipping's reactions: ship an order once its stock is held, or fail the shipment; fail it
for good when the order is cancelled before it shipped."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.events import InventoryReserved, OrderCancelled, OrderShipped, ShippingFailed
from services.shipping import store
from services.shipping.model import (
    HOUSE_CARRIER,
    ShipmentDecision,
    decide_shipment,
    refuse_shipment,
    should_ship,
)
from shared.contracts.errors import TransientError
from shared.storage.db import UnitOfWork

__all__ = ["TIMED_OUT", "ShipRule", "refuse_cancelled", "ship_order", "ship_rule"]

PRODUCER = "shipping"

# The reason of the one OrderCancelled that is a decision rather than a report (the order
# service's ``CancelReason.timed_out``): every other cancel comes after its compensations.
TIMED_OUT = "timed_out"

ShipRule = Callable[[InventoryReserved], ShipmentDecision]
"""How a reserved order's shipment is decided."""


def ship_rule(event: InventoryReserved) -> ShipmentDecision:
    """The business rule: ship it."""
    return decide_shipment(event.order_id)


async def ship_order(
    events: Sequence[InventoryReserved], uow: UnitOfWork, decide: ShipRule = ship_rule
) -> None:
    """Send each order's parcel with its tracking id, or fail it with a reason (``decide``).

    One statement finds the orders already shipped (or failed), one records the others.
    """
    done = await store.shipped_orders(uow.session, [event.order_id for event in events])
    decided: list[store.Shipment] = []
    for event in events:
        if not should_ship(done.get(event.order_id)):
            continue
        decision = decide(event)
        done[event.order_id] = decision.status
        decided.append(
            store.Shipment(event.order_id, decision.status, decision.tracking_id, decision.reason)
        )
        if decision.shipped and decision.tracking_id is not None:
            shipped = OrderShipped.caused_by(
                event, producer=PRODUCER, tracking_id=decision.tracking_id, carrier=HOUSE_CARRIER
            )
            uow.emit(shipped)
        else:
            reason = str(decision.reason)
            uow.emit(ShippingFailed.caused_by(event, producer=PRODUCER, reason=reason))
    if len(await store.add_shipments(uow.session, decided)) < len(decided):
        # A copy of an order's event (another event id, so the inbox let it through) was
        # handled at the same moment and recorded its shipment first: undo all, retry.
        raise TransientError("an order's shipment was recorded meanwhile by another delivery")


async def refuse_cancelled(events: Sequence[OrderCancelled], uow: UnitOfWork) -> None:
    """An order timed out: unless its parcel already left, it never will.

    Shipping is the step that cannot be undone, so it is the one that says whether the
    timed-out order may still be compensated: with no shipment yet, it records a ``FAILED``
    one (a later ``InventoryReserved`` finds it and ships nothing) and emits
    ``ShippingFailed(order_cancelled)``, on which inventory releases what it reserved and
    payment refunds what it charged, as after any failed shipment. With a shipment already
    recorded there is nothing to do: a failed one was compensated, a shipped one is kept.
    """
    cancels = {event.order_id: event for event in events if event.reason == TIMED_OUT}
    if not cancels:
        return
    done = await store.shipped_orders(uow.session, list(cancels))
    refused = [order_id for order_id in cancels if should_ship(done.get(order_id))]
    decision = refuse_shipment()
    decided = [
        store.Shipment(order_id, decision.status, None, decision.reason) for order_id in refused
    ]
    if len(await store.add_shipments(uow.session, decided)) < len(decided):
        # The order's InventoryReserved was handled at the same moment and recorded its
        # shipment first: undo all, and the retry sees what that shipment was.
        raise TransientError("an order's shipment was recorded meanwhile")
    for order_id in refused:
        uow.emit(
            ShippingFailed.caused_by(
                cancels[order_id], producer=PRODUCER, reason=str(decision.reason)
            )
        )
