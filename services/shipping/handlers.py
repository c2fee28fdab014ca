"""Shipping's reaction: ship an order once its stock is held, or fail the shipment."""

from __future__ import annotations

from collections.abc import Sequence

from services.shipping import store
from services.shipping.model import HOUSE_CARRIER, decide_shipment, should_ship
from shared.db import UnitOfWork
from shared.errors import TransientError
from shared.events import InventoryReserved, OrderShipped, ShippingFailed
from shared.faults import FaultKind, FaultRegistry

__all__ = ["ship_order"]

PRODUCER = "shipping"


async def ship_order(
    events: Sequence[InventoryReserved], uow: UnitOfWork, faults: FaultRegistry
) -> None:
    """Send each order's parcel with its tracking id, or fail the shipment with a reason.

    One statement finds the orders already shipped (or failed), one records the others.
    """
    done = await store.shipped_orders(uow.session, [event.order_id for event in events])
    decided: list[store.Shipment] = []
    for event in events:
        if not should_ship(done.get(event.order_id)):
            continue
        injected = faults.take(FaultKind.fail, event.order_id) is not None
        decision = decide_shipment(event.order_id, injected_failure=injected)
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
