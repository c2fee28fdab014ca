"""Shipping's admin routes: shipments to look at."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from services.ids import OrderIdPath
from services.shipping import store
from shared.app.http import not_found
from shared.storage.db import UnitOfWorkFactory

__all__ = ["admin_router"]


class ShipmentPublic(BaseModel):
    order_id: str
    status: str
    tracking_id: str | None
    reason: str | None = None


def admin_router(units: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter(tags=["shipping admin"])

    @router.get("/shipments/{order_id}", responses=not_found("shipment"))
    async def get_shipment(order_id: OrderIdPath) -> ShipmentPublic:
        """An order's shipment: SHIPPED with its tracking id, or FAILED with a reason."""
        async with units() as uow:
            shipment = await store.get_shipment(uow.session, order_id)
        if shipment is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no shipment for order {order_id!r}")
        reason = shipment.reason
        return ShipmentPublic(
            order_id=order_id,
            status=shipment.status.value,
            tracking_id=shipment.tracking_id,
            reason=reason,
        )

    return router
