"""Shipping's table and the queries its handler and routes need."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.shipping.model import ShipmentStatus
from shared.storage.sql import InsertManyUnlessPresent

__all__ = ["Shipment", "add_shipments", "get_shipment", "metadata", "shipments", "shipped_orders"]

metadata = MetaData()

shipments = Table(
    "shipments",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("tracking_id", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


@dataclass(frozen=True)
class Shipment:
    order_id: str
    status: ShipmentStatus
    tracking_id: str | None
    reason: str | None


async def shipped_orders(
    session: AsyncConnection, order_ids: Iterable[str]
) -> dict[str, ShipmentStatus]:
    """The shipment status of each of ``order_ids`` that has a shipment."""
    query = select(shipments.c.order_id, shipments.c.status).where(
        shipments.c.order_id.in_(sorted(set(order_ids)))
    )
    return {row.order_id: ShipmentStatus(row.status) for row in await session.execute(query)}


_ADD_SHIPMENTS = InsertManyUnlessPresent(
    shipments, ("order_id", "status", "tracking_id", "reason"), conflict="order_id"
)


async def add_shipments(session: AsyncConnection, new: Sequence[Shipment]) -> set[str]:
    """Record ``new`` in one statement; returns the orders that had no shipment yet."""
    return await _ADD_SHIPMENTS(session, [_row(shipment) for shipment in new])


async def get_shipment(session: AsyncConnection, order_id: str) -> Shipment | None:
    query = select(shipments).where(shipments.c.order_id == order_id)
    row = (await session.execute(query)).mappings().one_or_none()
    if row is None:
        return None
    reason = row["reason"] or None
    return Shipment(row["order_id"], ShipmentStatus(row["status"]), row["tracking_id"], reason)


def _row(shipment: Shipment) -> dict[str, object]:
    return {
        "order_id": shipment.order_id,
        "status": shipment.status.value,
        "tracking_id": shipment.tracking_id,
        "reason": str(shipment.reason) if shipment.reason else None,
    }
