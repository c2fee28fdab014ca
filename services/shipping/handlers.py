"""Shipping's reaction: ship an order once its stock is held, or fail the shipment."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.shipping import store
from services.shipping.model import ShipmentDecision, decide_shipment, should_ship
from shared.db import UnitOfWork
from shared.errors import TransientError
from shared.events import InventoryReserved, OrderShipped, ShippingFailed

__all__ = ["ShipRule", "ship_order", "ship_rule"]

PRODUCER = "shipping"

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
            tracking_id = decision.tracking_id
            uow.emit(OrderShipped.caused_by(event, producer=PRODUCER, tracking_id=tracking_id))
        else:
            reason = str(decision.reason)
            uow.emit(ShippingFailed.caused_by(event, producer=PRODUCER, reason=reason))
    if len(await store.add_shipments(uow.session, decided)) < len(decided):
        # A copy of an order's event (another event id, so the inbox let it through) was
        # handled at the same moment and recorded its shipment first: undo all, retry.
        raise TransientError("an order's shipment was recorded meanwhile by another delivery")
