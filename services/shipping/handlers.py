"""Shipping's reaction: ship an order once its stock is held, or fail the shipment."""

from __future__ import annotations

from services.shipping import store
from services.shipping.model import decide_shipment, should_ship
from shared.db import UnitOfWork
from shared.events import InventoryReserved, OrderShipped, ShippingFailed
from shared.faults import FaultKind, FaultRegistry

__all__ = ["ship_order"]

PRODUCER = "shipping"


async def ship_order(event: InventoryReserved, uow: UnitOfWork, faults: FaultRegistry) -> None:
    """Send the order's parcel with its tracking id, or fail the shipment with a reason."""
    existing = await store.get_shipment(uow.session, event.order_id)
    if not should_ship(existing.status if existing else None):
        return
    injected = faults.take(FaultKind.fail, event.order_id) is not None
    decision = decide_shipment(event.order_id, injected_failure=injected)
    shipment = store.Shipment(
        event.order_id, decision.status, decision.tracking_id, decision.reason
    )
    if not await store.add_shipment(uow.session, shipment):
        return  # a concurrent delivery of this order recorded its shipment first
    if decision.shipped and decision.tracking_id is not None:
        uow.emit(OrderShipped.caused_by(event, producer=PRODUCER, tracking_id=decision.tracking_id))
    else:
        uow.emit(ShippingFailed.caused_by(event, producer=PRODUCER, reason=str(decision.reason)))
