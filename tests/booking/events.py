"""The booking saga's event catalogue: its own types, keyed by the booking id."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.catalogue import Catalogue
from shared.contracts.events import Event

__all__ = [
    "CATALOGUE",
    "BookingConfirmed",
    "BookingEvent",
    "BookingRejected",
    "BookingRequested",
    "SeatHeld",
    "SeatUnavailable",
]


class BookingEvent(Event):
    """An event of a booking's saga."""

    key_field: ClassVar[str] = "booking_id"

    booking_id: str = Field(min_length=1)


class BookingRequested(BookingEvent):
    event_type: Literal["BookingRequested"] = "BookingRequested"
    seat: str = Field(min_length=1)


class SeatHeld(BookingEvent):
    event_type: Literal["SeatHeld"] = "SeatHeld"
    seat: str


class SeatUnavailable(BookingEvent):
    event_type: Literal["SeatUnavailable"] = "SeatUnavailable"
    seat: str
    reason: str


class BookingConfirmed(BookingEvent):
    event_type: Literal["BookingConfirmed"] = "BookingConfirmed"


class BookingRejected(BookingEvent):
    event_type: Literal["BookingRejected"] = "BookingRejected"
    reason: str


CATALOGUE = Catalogue(
    (BookingRequested, SeatHeld, SeatUnavailable, BookingConfirmed, BookingRejected)
)
