"""The database work of each step, as the real handlers do it, minus the events they emit.

Each function mirrors a handler of ``services/<name>/handlers.py`` with the same store and
model calls, and returns what the synchronous caller needs to know instead of emitting it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from services.inventory import store as inventory_store
from services.inventory.model import (
    Line,
    ReservationStatus,
    can_transition,
    quantities_by_sku,
    reserve,
    ship,
)
from services.order import store as order_store
from services.order.model import OrderStatus, SagaFact
from services.payment import store as payment_store
from services.payment.model import PaymentStatus, decide_charge, should_charge
from services.shipping import store as shipping_store
from services.shipping.model import decide_shipment, should_ship
from shared.storage.db import UnitOfWork

__all__ = ["charge", "complete_order", "reserve_stock", "ship_order", "ship_stock"]

# What the order service has learnt by the time a happy saga completes.
_HAPPY_FACTS = (SagaFact.PaymentProcessed, SagaFact.InventoryReserved, SagaFact.OrderShipped)


async def charge(uow: UnitOfWork, order_id: str, customer_id: str, total: Decimal) -> bool:
    """payment's ``charge``: whether the order's total was (or already had been) charged."""
    existing = await payment_store.get_payment(uow.session, order_id)
    if not should_charge(existing.status if existing else None):
        return existing is not None and existing.status is PaymentStatus.CHARGED
    balance = await payment_store.lock_balance(uow.session, customer_id)
    decision = decide_charge(balance, total)
    payment = payment_store.Payment(order_id, customer_id, total, decision.status, decision.reason)
    if not await payment_store.add_payments(uow.session, [payment]):
        return False
    if decision.charged and decision.new_balance is not None:
        await payment_store.set_balance(uow.session, customer_id, decision.new_balance)
    await uow.commit()
    return decision.charged


async def reserve_stock(uow: UnitOfWork, order_id: str, lines: Sequence[Line]) -> bool:
    """inventory's ``reserve_stock``: whether every line is held for the order."""
    existing = await inventory_store.get_reservation(uow.session, order_id)
    if existing is not None:
        return existing.status is not ReservationStatus.FAILED
    levels = await inventory_store.lock_stock(uow.session, quantities_by_sku(lines))
    result = reserve(levels, lines)
    reservation = inventory_store.Reservation(order_id, result.status, tuple(lines), result.reason)
    if not await inventory_store.add_reservations(uow.session, [reservation]):
        return False
    await inventory_store.save_stock(uow.session, result.levels)
    await uow.commit()
    return result.reserved


async def ship_order(uow: UnitOfWork, order_id: str) -> str | None:
    """shipping's ``ship_order``: the tracking id, or None when the shipment failed."""
    existing = await shipping_store.get_shipment(uow.session, order_id)
    if not should_ship(existing.status if existing else None):
        return existing.tracking_id if existing else None
    decision = decide_shipment(order_id)
    shipment = shipping_store.Shipment(
        order_id, decision.status, decision.tracking_id, decision.reason
    )
    if not await shipping_store.add_shipments(uow.session, [shipment]):
        return None
    await uow.commit()
    return decision.tracking_id if decision.shipped else None


async def ship_stock(uow: UnitOfWork, order_id: str) -> None:
    """inventory's ``ship_stock``: the order's reserved units become shipped."""
    reservation = await inventory_store.get_reservation(uow.session, order_id, lock=True)
    if reservation is None or not can_transition(reservation.status, ReservationStatus.SHIPPED):
        return
    levels = await inventory_store.lock_stock(uow.session, quantities_by_sku(reservation.lines))
    await inventory_store.save_stock(uow.session, ship(levels, reservation.lines))
    shipped = ReservationStatus.SHIPPED
    await inventory_store.set_reservation_statuses(uow.session, [order_id], shipped)
    await uow.commit()


async def complete_order(uow: UnitOfWork, order: order_store.Order) -> order_store.Order:
    """order's ``advance_saga`` for a happy saga, in one step: the order as it now stands."""
    saga = order.saga
    for fact in _HAPPY_FACTS:
        saga.record(fact)
    await order_store.save_sagas(uow.session, {order.order_id: saga})
    await uow.commit()
    if saga.status is not OrderStatus.COMPLETED:  # pragma: no cover - the facts complete it
        raise RuntimeError(f"order {order.order_id} did not complete: {saga.status}")
    return replace(order, status=saga.status, facts=saga.facts)
