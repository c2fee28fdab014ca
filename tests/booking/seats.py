"""The seats service: holds a seat for the first booking that asks for it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, MetaData, Table, Text, select
from sqlalchemy.dialects.postgresql import insert

from shared.app.declaration import ServiceDeclaration
from shared.consuming.subscriptions import Subscription
from shared.storage.db import UnitOfWork
from tests.booking.events import CATALOGUE, BookingRequested, SeatHeld, SeatUnavailable

metadata = MetaData()
holds = Table(
    "holds",
    metadata,
    Column("seat", Text, primary_key=True),
    Column("booking_id", Text, nullable=False),
)


async def hold(event: BookingRequested, uow: UnitOfWork) -> None:
    """The seat goes to the first booking that asks; any other hears it is taken."""
    claim = insert(holds).values(seat=event.seat, booking_id=event.booking_id)
    await uow.session.execute(claim.on_conflict_do_nothing())
    holder = await uow.session.scalar(select(holds.c.booking_id).where(holds.c.seat == event.seat))
    if holder == event.booking_id:
        uow.emit(SeatHeld.caused_by(event, producer="seats", seat=event.seat))
    else:
        taken = SeatUnavailable.caused_by(event, producer="seats", seat=event.seat, reason="taken")
        uow.emit(taken)


service = ServiceDeclaration(
    name="seats",
    description="Holds seats, one booking each.",
    port=8101,
    migrations=Path(__file__).parent / "migrations" / "seats",
    catalogue=CATALOGUE,
    consumers={"seats": [Subscription(BookingRequested, hold)]},
)
