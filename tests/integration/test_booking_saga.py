"""A second saga, seat bookings (tests/booking), runs on the platform as the order saga does:
its own catalogue, key and services, on the real Kafka, PostgreSQL and Redis, with no line of
``shared/`` written for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

from shared.contracts.topics import Topics, ensure_topics, existing_partitions
from tests.booking import desk, seats
from tests.booking.events import CATALOGUE, BookingRequested, SeatHeld
from tests.infra import Infrastructure

WAIT_S = 60.0  # every wait below is bounded by this


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    """The app's service started (migrations, topics, relay, consumers) and then stopped."""
    async with app.router.lifespan_context(app):
        yield


class Bookings:
    """The two services of the booking saga, running in this process."""

    def __init__(self, infra: Infrastructure, http: httpx.AsyncClient, prefix: str) -> None:
        self.infra = infra
        self.http = http
        self.topics = Topics(CATALOGUE, prefix)
        self.seats_group = f"{prefix}seats"

    async def book(self, seat: str) -> str:
        response = await self.http.post("/bookings", json={"seat": seat})
        assert response.status_code == 202, response.text
        booking_id: str = response.json()["booking_id"]
        return booking_id

    async def ended(self, booking_id: str) -> dict[str, Any]:
        """The booking once the saga has ended it (confirmed or rejected)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                booking: dict[str, Any] = (await self.http.get(f"/bookings/{booking_id}")).json()
                if booking["status"] != "REQUESTED":
                    return booking
                await asyncio.sleep(0.1)

    async def committed(self, tp: TopicPartition) -> int:
        """The seats group's committed offset on ``tp`` (-1: none yet)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.infra.kafka_bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.seats_group)
        finally:
            await admin.close()
        return offsets[tp].offset if tp in offsets else -1

    async def events(self, event_type: type[Any], booking_id: str) -> list[dict[str, Any]]:
        """The events of ``event_type`` about ``booking_id`` its topic holds, as JSON."""
        topic = self.topics.for_event(event_type)
        options = {"bootstrap_servers": self.infra.kafka_bootstrap}
        partitions = (await existing_partitions(options))[topic]
        reader = AIOKafkaConsumer(**options, enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign(partitions)
            await reader.seek_to_beginning(*partitions)
            ends = await reader.end_offsets(partitions)
            found = []
            async with asyncio.timeout(WAIT_S):
                while [tp for tp, end in ends.items() if await reader.position(tp) < end]:
                    batches = await reader.getmany(timeout_ms=500)
                    values = (json.loads(r.value) for batch in batches.values() for r in batch)
                    found += [value for value in values if value["booking_id"] == booking_id]
            return found
        finally:
            await reader.stop()


async def topics_ready(infra: Infrastructure, topics: Topics, partitions: int) -> None:
    """Create the saga's topics and wait until the cluster's metadata shows them all: a group
    that joined before it did would be given no partition of the missing ones (the consumers
    read metadata again only every few minutes)."""
    options = {"bootstrap_servers": infra.kafka_bootstrap}
    await ensure_topics(options, topics.all(), partitions=partitions)
    async with asyncio.timeout(WAIT_S):
        while True:
            known = await existing_partitions(options)
            if all(len(known.get(name, [])) == partitions for name in topics.all()):
                return
            await asyncio.sleep(0.2)


@pytest.fixture
async def bookings(infra: Infrastructure) -> AsyncIterator[Bookings]:
    prefix = infra.topic_prefix("booking")
    await topics_ready(infra, Topics(CATALOGUE, prefix), partitions=3)
    shared_settings: dict[str, Any] = {
        "kafka_bootstrap": infra.kafka_bootstrap,
        "redis_url": infra.redis_url,
        "topic_prefix": prefix,
        "topic_partitions": 3,
        "outbox_poll_interval_ms": 50,
        # The test stack's PostgreSQL serves every session at once: few connections each.
        "database_pool_size": 2,
        "database_max_overflow": 2,
    }
    desk_app = desk.service.app(
        desk.DeskSettings(database_url=await infra.create_database("desk"), **shared_settings)
    )
    seats_database = {"database_url": await infra.create_database("seats")}
    # The platform's settings, named after the service (it declares none of its own).
    seats_app = seats.service.app(
        seats.service.settings().model_copy(update={**seats_database, **shared_settings})
    )
    transport = httpx.ASGITransport(app=desk_app)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(running(desk_app))
        await stack.enter_async_context(running(seats_app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://desk")
        )
        yield Bookings(infra, http, prefix)


async def test_a_free_seat_is_confirmed_and_a_taken_one_rejected(bookings: Bookings) -> None:
    first = await bookings.book("12A")
    assert (await bookings.ended(first))["status"] == "CONFIRMED"

    second = await bookings.book("12A")
    other = await bookings.book("14C")

    rejected = await bookings.ended(second)
    assert (rejected["status"], rejected["reason"]) == ("REJECTED", "taken")
    assert (await bookings.ended(other))["status"] == "CONFIRMED"


async def test_a_booking_request_delivered_twice_is_handled_once(
    bookings: Bookings, infra: Infrastructure
) -> None:
    booking = await bookings.book("20B")
    assert (await bookings.ended(booking))["status"] == "CONFIRMED"
    (request,) = await bookings.events(BookingRequested, booking)

    # The same record again, as a producer's retry or a replay would send it: same event id.
    topic = bookings.topics.for_event(BookingRequested)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        value = json.dumps(request).encode()
        sent = await producer.send_and_wait(topic, value, key=booking.encode())
    finally:
        await producer.stop()

    # Nothing happening proves something only once the duplicate has been read.
    tp = TopicPartition(topic, sent.partition)
    async with asyncio.timeout(WAIT_S):
        while await bookings.committed(tp) <= sent.offset:  # noqa: ASYNC110  # polls Kafka
            await asyncio.sleep(0.2)
    assert len(await bookings.events(SeatHeld, booking)) == 1
    assert (await bookings.ended(booking))["status"] == "CONFIRMED"
