"""Inventory's admin routes: stock to set and read, reservations to look at."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from services.ids import SkuPath
from services.inventory import store
from services.inventory.model import StockLevel
from shared.app.http import BODY_RESPONSES, not_found
from shared.storage.db import UnitOfWorkFactory

__all__ = ["MAX_UNITS", "admin_router"]

MAX_UNITS = 2**31 - 1
"""The most units of one sku: what the stock table's integer columns hold."""


class StockUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    available: int = Field(ge=0, le=MAX_UNITS, strict=True)


class StockPublic(BaseModel):
    sku: str
    available: int
    reserved: int
    shipped: int

    @classmethod
    def of(cls, sku: str, level: StockLevel) -> StockPublic:
        return cls(
            sku=sku, available=level.available, reserved=level.reserved, shipped=level.shipped
        )


class ReservationLine(BaseModel):
    sku: str
    quantity: int


class ReservationPublic(BaseModel):
    order_id: str
    status: str
    items: list[ReservationLine]
    reason: str | None = None


def admin_router(units: UnitOfWorkFactory) -> APIRouter:
    router = APIRouter(tags=["inventory admin"])

    @router.put("/stock/{sku}", responses=BODY_RESPONSES)
    async def set_stock(sku: SkuPath, body: StockUpdate) -> StockPublic:
        """Set a sku's units on hand (creates the sku when it is new; reserved and shipped stay)."""
        async with units() as uow:
            level = await store.set_available(uow.session, sku, body.available)
            await uow.commit()
        return StockPublic.of(sku, level)

    @router.get("/stock/{sku}", responses=not_found("sku"))
    async def get_stock(sku: SkuPath) -> StockPublic:
        """A sku's units: available, reserved for paid orders, and shipped."""
        async with units() as uow:
            level = await store.read_stock(uow.session, sku)
        if level is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stock for sku {sku!r}")
        return StockPublic.of(sku, level)

    @router.get("/reservations/{order_id}")
    async def get_reservation(order_id: str) -> ReservationPublic:
        """An order's reservation: RESERVED, FAILED (with a reason), RELEASED or SHIPPED."""
        async with units() as uow:
            reservation = await store.get_reservation(uow.session, order_id)
        if reservation is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no reservation for {order_id!r}")
        return ReservationPublic(
            order_id=order_id,
            status=reservation.status.value,
            items=[ReservationLine(sku=sku, quantity=qty) for sku, qty in reservation.lines],
            reason=reservation.reason.value if reservation.reason else None,
        )

    return router
