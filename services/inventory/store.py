"""Inventory's tables and the queries its handlers and routes need."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.inventory.model import FailureReason, Line, ReservationStatus, StockLevel
from shared.storage.sql import InsertManyUnlessPresent

__all__ = [
    "Reservation",
    "add_reservations",
    "get_reservation",
    "lock_stock",
    "metadata",
    "read_stock",
    "reservations",
    "save_stock",
    "set_available",
    "set_reservation_statuses",
    "stock",
]

metadata = MetaData()

stock = Table(
    "stock",
    metadata,
    Column("sku", Text, primary_key=True),
    Column("available", Integer, nullable=False),
    Column("reserved", Integer, nullable=False, server_default="0"),
    Column("shipped", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The model never produces a negative count; the database refuses one all the same.
    CheckConstraint("available >= 0 AND reserved >= 0 AND shipped >= 0", name="stock_not_negative"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("status", Text, nullable=False),
    # [{"sku": ..., "quantity": ...}, ...] in the order of the event's lines.
    Column("items", JSONB, nullable=False),
    Column("reason", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


@dataclass(frozen=True)
class Reservation:
    order_id: str
    status: ReservationStatus
    lines: tuple[Line, ...]
    reason: FailureReason | None = None


async def lock_stock(session: AsyncConnection, skus: Iterable[str]) -> dict[str, StockLevel]:
    """The stock of ``skus`` that exist, locked until commit.

    Rows are locked in sku order (PostgreSQL sorts before it locks), so two instances
    reserving overlapping skus wait for each other instead of deadlocking.
    """
    query = (
        select(stock.c.sku, stock.c.available, stock.c.reserved, stock.c.shipped)
        .where(stock.c.sku.in_(sorted(set(skus))))
        .order_by(stock.c.sku)
        .with_for_update()
    )
    rows = (await session.execute(query)).all()
    return {row.sku: StockLevel(row.available, row.reserved, row.shipped) for row in rows}


async def read_stock(session: AsyncConnection, sku: str) -> StockLevel | None:
    query = select(stock.c.available, stock.c.reserved, stock.c.shipped).where(stock.c.sku == sku)
    row = (await session.execute(query)).one_or_none()
    return None if row is None else StockLevel(row.available, row.reserved, row.shipped)


async def save_stock(session: AsyncConnection, levels: Mapping[str, StockLevel]) -> None:
    """Write the new levels of skus that exist and that the caller has locked."""
    if not levels:
        return
    statement = (
        update(stock)
        .where(stock.c.sku == bindparam("b_sku"))
        .values(
            available=bindparam("b_available"),
            reserved=bindparam("b_reserved"),
            shipped=bindparam("b_shipped"),
            updated_at=func.now(),
        )
    )
    rows = [
        {
            "b_sku": sku,
            "b_available": level.available,
            "b_reserved": level.reserved,
            "b_shipped": level.shipped,
        }
        for sku, level in levels.items()
    ]
    await session.execute(statement, rows)


async def set_available(session: AsyncConnection, sku: str, available: int) -> StockLevel:
    """Set a sku's units on hand, creating it when new; reserved and shipped stay.

    One statement, so a reservation committed meanwhile is never overwritten.
    """
    statement = insert(stock).values(sku=sku, available=available, reserved=0, shipped=0)
    upsert = statement.on_conflict_do_update(
        index_elements=[stock.c.sku],
        set_={"available": statement.excluded.available, "updated_at": func.now()},
    ).returning(stock.c.available, stock.c.reserved, stock.c.shipped)
    row = (await session.execute(upsert)).one()
    return StockLevel(row.available, row.reserved, row.shipped)


async def reserved_orders(session: AsyncConnection, order_ids: Iterable[str]) -> set[str]:
    """The ones of ``order_ids`` that have a reservation (of any status)."""
    query = select(reservations.c.order_id).where(
        reservations.c.order_id.in_(sorted(set(order_ids)))
    )
    return set((await session.execute(query)).scalars())


async def lock_reservations(
    session: AsyncConnection, order_ids: Iterable[str]
) -> dict[str, Reservation]:
    """The reservations of ``order_ids`` that exist, locked until commit (in order-id order)."""
    query = (
        select(reservations)
        .where(reservations.c.order_id.in_(sorted(set(order_ids))))
        .order_by(reservations.c.order_id)
        .with_for_update()
    )
    found = (await session.execute(query)).mappings()
    return {row["order_id"]: _reservation(row) for row in found}


_ADD_RESERVATIONS = InsertManyUnlessPresent(
    reservations, ("order_id", "status", "items", "reason"), conflict="order_id"
)


async def add_reservations(session: AsyncConnection, new: Sequence[Reservation]) -> set[str]:
    """Record ``new`` in one statement; returns the orders that had no reservation yet."""
    return await _ADD_RESERVATIONS(session, [_row(reservation) for reservation in new])


_SET_RESERVATION_STATUS = (
    update(reservations)
    .where(reservations.c.order_id == bindparam("b_order_id"))
    .values(status=bindparam("b_status"), updated_at=func.now())
)


async def set_reservation_statuses(
    session: AsyncConnection, order_ids: Sequence[str], status: ReservationStatus
) -> None:
    """Give every reservation of ``order_ids`` ``status``, in one round trip."""
    if order_ids:
        rows = [{"b_order_id": order_id, "b_status": status.value} for order_id in order_ids]
        await session.execute(_SET_RESERVATION_STATUS, rows)


async def get_reservation(
    session: AsyncConnection, order_id: str, *, lock: bool = False
) -> Reservation | None:
    query = select(reservations).where(reservations.c.order_id == order_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).mappings().one_or_none()
    return None if row is None else _reservation(row)


def _reservation(row: RowMapping) -> Reservation:
    return Reservation(
        order_id=row["order_id"],
        status=ReservationStatus(row["status"]),
        lines=tuple((item["sku"], item["quantity"]) for item in row["items"]),
        reason=FailureReason(row["reason"]) if row["reason"] else None,
    )


def _row(reservation: Reservation) -> dict[str, object]:
    return {
        "order_id": reservation.order_id,
        "status": reservation.status.value,
        "items": _items(reservation.lines),
        "reason": reservation.reason.value if reservation.reason else None,
    }


def _items(lines: Sequence[Line]) -> list[dict[str, str | int]]:
    return [{"sku": sku, "quantity": quantity} for sku, quantity in lines]
