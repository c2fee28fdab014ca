"""Inventory's reactions: hold stock for a paid order, then ship it or give it back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from services.events import (
    InventoryFailed,
    InventoryReleased,
    InventoryReserved,
    LineItem,
    OrderShipped,
    PaymentProcessed,
    ShippingFailed,
)
from services.inventory import store
from services.inventory.model import (
    FailureReason,
    Line,
    ReservationResult,
    ReservationStatus,
    StockLevel,
    can_transition,
    release,
    reserve,
    ship,
)
from shared.contracts.errors import TransientError
from shared.contracts.events import Event
from shared.storage.db import UnitOfWork

__all__ = ["ReserveRule", "release_stock", "reserve_rule", "reserve_stock", "ship_stock"]

PRODUCER = "inventory"

Move = Callable[[Mapping[str, StockLevel], Sequence[Line]], dict[str, StockLevel]]

ReserveRule = Callable[[PaymentProcessed, Mapping[str, StockLevel | None]], ReservationResult]
"""How a paid order's reservation is decided, given the stock of its skus."""


def reserve_rule(
    event: PaymentProcessed, levels: Mapping[str, StockLevel | None]
) -> ReservationResult:
    """The business rule: reserve every line of the order, or none."""
    return reserve(levels, [(line.sku, line.quantity) for line in event.items])


async def reserve_stock(
    events: Sequence[PaymentProcessed], uow: UnitOfWork, decide: ReserveRule = reserve_rule
) -> None:
    """Hold every line of each paid order, or none of them and say why (``decide``).

    One statement finds the orders already reserved, one locks the stock of every sku of
    the others (in sku order, so concurrent transactions wait instead of deadlocking); the
    orders are decided one after the other on the levels the earlier ones left, and the
    reservations and the new levels are written in one statement each.
    """
    session = uow.session
    done = await store.reserved_orders(session, [event.order_id for event in events])
    todo = [event for event in events if event.order_id not in done]
    if not todo:
        return
    wanted = {line.sku for event in todo for line in event.items}
    levels: dict[str, StockLevel] = await store.lock_stock(session, wanted)
    moved: dict[str, StockLevel] = {}
    decided: list[store.Reservation] = []
    for event in todo:
        if event.order_id in done:
            continue  # twice in this run: the first one decided
        done.add(event.order_id)
        lines = tuple((line.sku, line.quantity) for line in event.items)
        result = decide(event, levels)
        levels |= result.levels
        moved |= result.levels
        decided.append(store.Reservation(event.order_id, result.status, lines, result.reason))
        uow.emit(_outcome(event, result))
    recorded = await store.add_reservations(session, decided)
    if len(recorded) < len(decided):
        # A copy of an order's event (another event id, so the inbox let it through) was
        # handled at the same moment and reserved first: undo all of it, the retry sees it.
        raise TransientError("an order's reservation was recorded meanwhile by another delivery")
    await store.save_stock(session, moved)


def _outcome(event: PaymentProcessed, result: ReservationResult) -> Event:
    if result.reserved:
        return InventoryReserved.caused_by(event, producer=PRODUCER, items=event.items)
    sku = result.failed_skus[0] if result.failed_skus else None
    return InventoryFailed.caused_by(event, producer=PRODUCER, reason=str(result.reason), sku=sku)


async def ship_stock(events: Sequence[OrderShipped], uow: UnitOfWork) -> None:
    """The parcels left: each order's reserved units become shipped."""
    await _close(uow, [event.order_id for event in events], ReservationStatus.SHIPPED, ship)


async def release_stock(events: Sequence[ShippingFailed], uow: UnitOfWork) -> None:
    """The shipments failed: each order's reserved units are available again.

    An order with no reservation yet gets a ``FAILED`` one (reason ``order_cancelled``), so
    that its ``PaymentProcessed``, should it come later, reserves nothing: shipping fails an
    order it never saw reserved only when the order service cancelled it first.
    """
    by_order = {event.order_id: event for event in events}
    closed, unreserved = await _close(uow, list(by_order), ReservationStatus.RELEASED, release)
    for reservation in closed:
        items = [LineItem(sku=sku, quantity=quantity) for sku, quantity in reservation.lines]
        event = by_order[reservation.order_id]
        uow.emit(InventoryReleased.caused_by(event, producer=PRODUCER, items=items))
    voided = [
        store.Reservation(order_id, ReservationStatus.FAILED, (), FailureReason.order_cancelled)
        for order_id in unreserved
    ]
    if len(await store.add_reservations(uow.session, voided)) < len(voided):
        # The order's PaymentProcessed reserved at this very moment (the insert waited for
        # that commit): start again, and the retry releases that reservation.
        raise TransientError("an order's reservation was recorded meanwhile")


async def _close(
    uow: UnitOfWork, order_ids: Sequence[str], target: ReservationStatus, move: Move
) -> tuple[list[store.Reservation], list[str]]:
    """Move the ``RESERVED`` reservations of ``order_ids`` to ``target``, their stock with them.

    Returns the reservations moved, and the orders that have no reservation at all; the
    others had nothing to do (a reservation that already failed, shipped or was released:
    a late or repeated event).
    """
    session = uow.session
    found = await store.lock_reservations(session, order_ids)
    unreserved = [order_id for order_id in dict.fromkeys(order_ids) if order_id not in found]
    closing = [r for r in found.values() if can_transition(r.status, target)]
    if not closing:
        return [], unreserved
    levels = await store.lock_stock(session, {sku for r in closing for sku, _ in r.lines})
    moved: dict[str, StockLevel] = {}
    for reservation in closing:
        after = move(levels, reservation.lines)
        levels |= after
        moved |= after
    await store.save_stock(session, moved)
    await store.set_reservation_statuses(session, [r.order_id for r in closing], target)
    return closing, unreserved
