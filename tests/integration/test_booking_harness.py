"""The booking saga (tests/booking) on the handler harness: handlers on real PostgreSQL,
events delivered in-process, no Kafka nor Redis (the tests docs/guide.md builds)."""

from __future__ import annotations

import pytest

from shared.testing.harness import Harness
from tests.booking import desk, seats
from tests.booking.events import BookingRequested
from tests.infra import Infrastructure

pytestmark = pytest.mark.integration


async def test_a_seat_goes_to_the_first_booking_that_asks(infra: Infrastructure) -> None:
    async with Harness(seats.service, postgres_url=infra.postgres_url) as saga:
        for booking in ("b-1", "b-2"):
            await saga.publish(BookingRequested.first(booking_id=booking, producer="t", seat="1A"))
        published = await saga.settle()

    answers = [(e.event_type, e.booking_id) for e in published[2:]]
    assert answers == [("SeatHeld", "b-1"), ("SeatUnavailable", "b-2")]


async def test_a_free_seat_is_confirmed_and_a_taken_one_rejected(infra: Infrastructure) -> None:
    async with Harness(desk.service, seats.service, postgres_url=infra.postgres_url) as saga:
        async with saga.units("desk")() as uow:
            await desk.book(uow, "b-1", seat="12A")
            await desk.book(uow, "b-2", seat="12A")
            await uow.commit()
        published = await saga.settle()

    ends = {e.booking_id: e.event_type for e in published if e.producer == "desk"}
    assert ends == {"b-1": "BookingConfirmed", "b-2": "BookingRejected"}
    assert saga.dead_letters == []
