"""Retention of the outbox and inbox tables, against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared.db import asyncpg_dsn, create_platform_tables, make_engine
from shared.events import OrderShipped
from shared.outbox import OutboxRelay
from shared.producer import build_producer
from shared.retention import purge_processed_inbox, purge_sent_outbox
from shared.settings import PlatformSettings
from shared.topics import Topics, ensure_topics
from tests.infra import Infrastructure

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


@pytest.fixture
async def database(infra: Infrastructure) -> AsyncIterator[str]:
    url = await infra.create_database("retention")
    engine = make_engine(url)
    await create_platform_tables(engine)
    await engine.dispose()
    yield url


@pytest.fixture
async def connection(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(database))
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def producer(infra: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    settings = PlatformSettings(
        kafka_bootstrap=infra.kafka_bootstrap, service_name="test-retention"
    )
    producer = build_producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


async def add_outbox_row(
    connection: asyncpg.Connection,
    label: str,
    *,
    topic: str = "unused",
    age: timedelta = timedelta(0),
    sent_age: timedelta | None = None,
) -> None:
    """An outbox row created ``age`` ago and, unless ``sent_age`` is None, sent that long ago."""
    await connection.execute(
        "INSERT INTO sagakit_outbox (topic, key, value, headers, created_at, sent_at) "
        "VALUES ($1, $2, $3, '[]', now() - $4::interval, now() - $5::interval)",
        topic,
        label.encode(),
        label.encode(),
        age,
        sent_age,
    )


async def add_inbox_row(connection: asyncpg.Connection, group: str, age: timedelta) -> None:
    await connection.execute(
        "INSERT INTO sagakit_inbox (consumer_group, event_id, processed_at) "
        "VALUES ($1, $2, now() - $3::interval)",
        group,
        uuid.uuid4(),
        age,
    )


async def outbox_keys(connection: asyncpg.Connection) -> set[str]:
    return {
        bytes(row["key"]).decode()
        for row in await connection.fetch("SELECT key FROM sagakit_outbox")
    }


async def inbox_groups(connection: asyncpg.Connection) -> set[str]:
    return {
        row["consumer_group"]
        for row in await connection.fetch("SELECT consumer_group FROM sagakit_inbox")
    }


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        await asyncio.sleep(0.05)


async def test_sent_rows_older_than_the_retention_are_purged_and_the_rest_kept(
    connection: asyncpg.Connection,
) -> None:
    await add_outbox_row(connection, "sent-long-ago", age=2 * DAY, sent_age=2 * DAY)
    await add_outbox_row(connection, "sent-recently", age=2 * DAY, sent_age=timedelta(hours=1))
    await add_outbox_row(connection, "never-sent-and-old", age=30 * DAY)
    await add_outbox_row(connection, "never-sent")

    assert await purge_sent_outbox(connection, DAY) == 1

    assert await outbox_keys(connection) == {"sent-recently", "never-sent-and-old", "never-sent"}


async def test_inbox_rows_older_than_the_retention_are_purged_and_recent_ones_kept(
    connection: asyncpg.Connection,
) -> None:
    await add_inbox_row(connection, "old", 8 * DAY)
    await add_inbox_row(connection, "recent", 6 * DAY)

    assert await purge_processed_inbox(connection, WEEK) == 1

    assert await inbox_groups(connection) == {"recent"}


async def test_a_purge_deletes_one_bounded_batch_at_a_time(connection: asyncpg.Connection) -> None:
    for number in range(5):
        await add_outbox_row(connection, f"old-{number}", age=2 * DAY, sent_age=2 * DAY)

    deleted = [await purge_sent_outbox(connection, DAY, batch_size=2) for _ in range(4)]

    assert deleted == [2, 2, 1, 0]


async def test_the_leading_relay_purges_both_tables_while_it_runs(
    infra: Infrastructure, database: str, connection: asyncpg.Connection, producer: AIOKafkaProducer
) -> None:
    topics = Topics(prefix=infra.topic_prefix("retention"))
    topic = topics.for_event(OrderShipped)
    await ensure_topics({"bootstrap_servers": infra.kafka_bootstrap}, [topic], partitions=1)
    await add_outbox_row(connection, "sent-long-ago", topic=topic, age=2 * DAY, sent_age=2 * DAY)
    await add_outbox_row(connection, "never-sent-and-old", topic=topic, age=30 * DAY)
    await add_inbox_row(connection, "old", 8 * DAY)
    await add_inbox_row(connection, "recent", timedelta(0))
    relay = OutboxRelay(
        database,
        producer,
        poll_interval_s=0.1,
        ack_timeout_s=10,
        outbox_retention=DAY,
        inbox_retention=WEEK,
        purge_interval_s=0.1,
        name=f"retention-{uuid.uuid4().hex[:6]}",
    )

    async def only_the_unsent_row_is_left_and_sent() -> bool:
        rows = await connection.fetch("SELECT key, sent_at FROM sagakit_outbox")
        return [(bytes(row["key"]), row["sent_at"] is not None) for row in rows] == [
            (b"never-sent-and-old", True)
        ]

    await relay.start()
    try:
        await eventually(only_the_unsent_row_is_left_and_sent)
        await eventually(lambda: _equals(inbox_groups(connection), {"recent"}))
        # Rows that expire while it runs go at the next purge, not only at the first.
        await add_inbox_row(connection, "expired-later", 8 * DAY)
        await eventually(lambda: _equals(inbox_groups(connection), {"recent"}))
    finally:
        await relay.stop()

    assert relay.stats.published == 1
    assert (relay.stats.purged_outbox, relay.stats.purged_inbox) == (1, 2)


async def _equals(value: Awaitable[set[str]], expected: set[str]) -> bool:
    return await value == expected
