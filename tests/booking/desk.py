"""The booking desk: takes bookings over HTTP, and ends each one when the seats service has
answered."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import Column, MetaData, Table, Text, select, update

from shared.app.declaration import Consumers, ServiceDeclaration
from shared.app.platform import Platform
from shared.consuming.subscriptions import Subscription
from shared.settings import PlatformSettings
from shared.storage.db import UnitOfWork, UnitOfWorkFactory
from tests.booking.events import (
    CATALOGUE,
    BookingConfirmed,
    BookingRejected,
    BookingRequested,
    SeatHeld,
    SeatUnavailable,
)

PRODUCER = "desk"

metadata = MetaData()
bookings = Table(
    "bookings",
    metadata,
    Column("booking_id", Text, primary_key=True),
    Column("seat", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=True),
)


class DeskSettings(PlatformSettings):
    service_name: str = "desk"


class BookingRequest(BaseModel):
    seat: str


async def book(uow: UnitOfWork, booking_id: str, seat: str) -> dict[str, Any]:
    """Record a requested booking and start its saga (in ``uow``, for its caller to commit)."""
    row = {"booking_id": booking_id, "seat": seat, "status": "REQUESTED"}
    await uow.session.execute(bookings.insert().values(row))
    uow.emit(BookingRequested.first(booking_id=booking_id, producer=PRODUCER, seat=seat))
    return row


def router(units: UnitOfWorkFactory) -> APIRouter:
    api = APIRouter()

    @api.post("/bookings", status_code=status.HTTP_202_ACCEPTED)
    async def request_booking(body: BookingRequest) -> dict[str, Any]:
        async with units() as uow:
            row = await book(uow, str(uuid.uuid4()), body.seat)
            await uow.commit()
        return row

    @api.get("/bookings/{booking_id}")
    async def get_booking(booking_id: str) -> dict[str, Any]:
        async with units() as uow:
            query = select(bookings).where(bookings.c.booking_id == booking_id)
            row = (await uow.session.execute(query)).mappings().one_or_none()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no booking {booking_id}")
        return dict(row)

    return api


async def _end(uow: UnitOfWork, booking_id: str, status_: str, reason: str | None) -> bool:
    """Move a requested booking to its end; False when it had ended already."""
    moved = await uow.session.execute(
        update(bookings)
        .where(bookings.c.booking_id == booking_id, bookings.c.status == "REQUESTED")
        .values(status=status_, reason=reason)
    )
    return moved.rowcount == 1


async def confirm(event: SeatHeld, uow: UnitOfWork) -> None:
    if await _end(uow, event.booking_id, "CONFIRMED", None):
        uow.emit(BookingConfirmed.caused_by(event, producer=PRODUCER))


async def reject(event: SeatUnavailable, uow: UnitOfWork) -> None:
    if await _end(uow, event.booking_id, "REJECTED", event.reason):
        uow.emit(BookingRejected.caused_by(event, producer=PRODUCER, reason=event.reason))


def consumers(platform: Platform[DeskSettings]) -> Consumers:
    return {"desk": [Subscription(SeatHeld, confirm), Subscription(SeatUnavailable, reject)]}


service = ServiceDeclaration(
    name="desk",
    settings=DeskSettings,
    description="Takes seat bookings and tells how each ended.",
    port=8100,
    migrations=Path(__file__).parent / "migrations" / "desk",
    catalogue=CATALOGUE,
    consumers=consumers,
    routers=lambda platform: [router(platform.units)],
)
