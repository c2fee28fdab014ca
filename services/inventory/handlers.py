"""Inventory's reactions: hold stock for a paid order, then ship it or give it back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from services.inventory import store
from services.inventory.model import (
    Line,
    ReservationStatus,
    StockLevel,
    can_transition,
    quantities_by_sku,
    release,
    reserve,
    ship,
)
from shared.db import UnitOfWork
from shared.events import (
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    LineItem,
    OrderShipped,
    PaymentProcessed,
    ShippingFailed,
)
from shared.faults import FaultKind, FaultRegistry

__all__ = ["release_stock", "reserve_stock", "ship_stock"]

PRODUCER = "inventory"

Move = Callable[[Mapping[str, StockLevel], Sequence[Line]], dict[str, StockLevel]]


async def reserve_stock(event: PaymentProcessed, uow: UnitOfWork, faults: FaultRegistry) -> None:
    """Hold every line of a paid order, or none of them and say why."""
    if await store.get_reservation(uow.session, event.order_id) is not None:
        return
    lines = tuple((line.sku, line.quantity) for line in event.items)
    injected = faults.take(FaultKind.out_of_stock, event.order_id) is not None
    levels = {} if injected else await store.lock_stock(uow.session, quantities_by_sku(lines))
    result = reserve(levels, lines, injected_out_of_stock=injected)
    reservation = store.Reservation(event.order_id, result.status, lines, result.reason)
    if not await store.add_reservation(uow.session, reservation):
        return  # a concurrent delivery of this order recorded its reservation first
    await store.save_stock(uow.session, result.levels)
    if result.reserved:
        uow.emit(InventoryReserved.caused_by(event, producer=PRODUCER, items=event.items))
    else:
        sku = result.failed_skus[0] if result.failed_skus else None
        uow.emit(
            InventoryFailed.caused_by(event, producer=PRODUCER, reason=str(result.reason), sku=sku)
        )


async def ship_stock(event: OrderShipped, uow: UnitOfWork) -> None:
    """The parcel left: the order's reserved units become shipped."""
    await _close(uow, event.order_id, ReservationStatus.SHIPPED, ship)


async def release_stock(event: ShippingFailed, uow: UnitOfWork) -> None:
    """The shipment failed: the order's reserved units are available again."""
    reservation = await _close(uow, event.order_id, ReservationStatus.RELEASED, release)
    if reservation is not None:
        items = [LineItem(sku=sku, quantity=quantity) for sku, quantity in reservation.lines]
        uow.emit(InventoryReleased.caused_by(event, producer=PRODUCER, items=items))


async def _close(
    uow: UnitOfWork, order_id: str, target: ReservationStatus, move: Move
) -> store.Reservation | None:
    """Move a ``RESERVED`` reservation to ``target`` and its stock with it.

    Returns the reservation, or None when there was nothing to do: no reservation, or one
    that already failed, shipped or was released (a late or repeated event).
    """
    reservation = await store.get_reservation(uow.session, order_id, lock=True)
    if reservation is None or not can_transition(reservation.status, target):
        return None
    levels = await store.lock_stock(uow.session, quantities_by_sku(reservation.lines))
    await store.save_stock(uow.session, move(levels, reservation.lines))
    await store.set_reservation_status(uow.session, order_id, target)
    return reservation
