"""The seats service: holds a seat for the first booking that asks for it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, MetaData, Table, Text, select
from sqlalchemy.dialects.postgresql import insert

from shared.app.declaration import Consumers, ServiceDeclaration
from shared.app.platform import Platform
from shared.consuming.subscriptions import Subscription
from shared.settings import PlatformSettings
from shared.storage.db import UnitOfWork
from tests.booking.events import CATALOGUE, BookingRequested, SeatHeld, SeatUnavailable

PRODUCER = "seats"
SEAT_TAKEN = "seat_taken"

metadata = MetaData()
holds = Table(
    "holds",
    metadata,
    Column("seat", Text, primary_key=True),
    Column("booking_id", Text, nullable=False),
)


class SeatsSettings(PlatformSettings):
    service_name: str = "seats"


async def hold(event: BookingRequested, uow: UnitOfWork) -> None:
    await uow.session.execute(
        insert(holds).values(seat=event.seat, booking_id=event.booking_id).on_conflict_do_nothing()
    )
    holder = await uow.session.scalar(select(holds.c.booking_id).where(holds.c.seat == event.seat))
    if holder == event.booking_id:
        uow.emit(SeatHeld.caused_by(event, producer=PRODUCER, seat=event.seat))
    else:
        uow.emit(
            SeatUnavailable.caused_by(event, producer=PRODUCER, seat=event.seat, reason=SEAT_TAKEN)
        )


def consumers(platform: Platform[SeatsSettings]) -> Consumers:
    return {"seats": [Subscription(BookingRequested, hold)]}


service = ServiceDeclaration(
    name="seats",
    settings=SeatsSettings,
    description="Holds seats, one booking each.",
    port=8101,
    migrations=Path(__file__).parent / "migrations" / "seats",
    catalogue=CATALOGUE,
    consumers=consumers,
)
