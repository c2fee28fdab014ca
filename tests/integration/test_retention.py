"""Retention of the outbox and inbox tables, against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

import services.shipping
from services.events import CATALOGUE, OrderShipped
from shared.app.platform import Platform, Runtime
from shared.consuming.faults import INFRASTRUCTURE_KINDS
from shared.contracts.topics import Topics
from shared.publishing.purger import Purge, RetentionPurger
from shared.publishing.retention import (
    INBOX_PURGE,
    OUTBOX_PURGE,
    purge_processed_inbox,
    purge_sent_outbox,
)
from shared.settings import PlatformSettings
from shared.storage.db import asyncpg_dsn, create_platform_tables, make_engine
from shared.storage.migrations import upgrade_to_head
from tests.infra import Infrastructure

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
SHIPPING_MIGRATIONS = Path(services.shipping.__file__).with_name("migrations")


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


async def test_one_purger_per_database_purges_both_tables_while_it_runs(
    database: str, connection: asyncpg.Connection
) -> None:
    await add_outbox_row(connection, "sent-long-ago", age=2 * DAY, sent_age=2 * DAY)
    await add_outbox_row(connection, "never-sent-and-old", age=30 * DAY)
    await add_inbox_row(connection, "old", 8 * DAY)
    await add_inbox_row(connection, "recent", timedelta(0))
    purges = [Purge(OUTBOX_PURGE, DAY), Purge(INBOX_PURGE, WEEK)]
    purgers = [
        RetentionPurger(database, purges, interval_s=0.1, name=f"purger-{number}")
        for number in range(2)
    ]

    async def one_leads() -> bool:
        return sum(purger.is_leader for purger in purgers) == 1

    for purger in purgers:
        await purger.start()
    try:
        await eventually(lambda: _equals(outbox_keys(connection), {"never-sent-and-old"}))
        await eventually(lambda: _equals(inbox_groups(connection), {"recent"}))
        # Rows that expire while it runs go at a later pass, not only at the first.
        await add_inbox_row(connection, "expired-later", 8 * DAY)
        await eventually(lambda: _equals(inbox_groups(connection), {"recent"}))
        await eventually(one_leads)
    finally:
        for purger in purgers:
            await purger.stop()

    assert sum(purger.purged["sagakit_outbox"] for purger in purgers) == 1
    assert sum(purger.purged["sagakit_inbox"] for purger in purgers) == 2
    # Only the one that took the lock purged; the other stood by all along.
    assert sorted(purger.passes > 0 for purger in purgers) == [False, True]


async def _equals(value: Awaitable[set[str]], expected: set[str]) -> bool:
    return await value == expected


async def test_the_purges_read_an_index_not_the_whole_table(
    connection: asyncpg.Connection,
) -> None:
    # With sequential scans priced out, the planner shows whether an index can serve the
    # purges' search: on a table of millions it is the difference between a batch of
    # milliseconds and one that outlasts every timeout.
    await connection.execute("SET enable_seqscan = off")
    outbox_plan = await connection.fetch(f"EXPLAIN {OUTBOX_PURGE.sql}", DAY, 10)
    inbox_plan = await connection.fetch(f"EXPLAIN {INBOX_PURGE.sql}", DAY, 10)

    assert "sagakit_outbox_sent_at" in "\n".join(row[0] for row in outbox_plan)
    assert "sagakit_inbox_processed_at" in "\n".join(row[0] for row in inbox_plan)


async def test_a_purge_blocked_on_its_table_neither_delays_publishing_nor_costs_the_lead(
    infra: Infrastructure,
) -> None:
    """The service's runtime as it runs in production, while another session holds the inbox
    table locked: every purge of the inbox waits (or times out), and the relay goes on."""
    topics = Topics(CATALOGUE, infra.topic_prefix("purge-blocked"))
    settings = PlatformSettings(
        service_name="shipping",
        kafka_bootstrap=infra.kafka_bootstrap,
        redis_url=infra.redis_url,
        database_url=await infra.create_database("purge_blocked"),
        topic_prefix=topics.prefix,
        outbox_retention_seconds=1,
        inbox_retention_seconds=1,
        purge_interval_seconds=0.2,
    )
    platform = Platform.configure(settings, CATALOGUE, INFRASTRUCTURE_KINDS)
    runtime = Runtime(platform, SHIPPING_MIGRATIONS, consumers={})
    # The tables exist before the runtime starts, so the lock can be taken first.
    await upgrade_to_head(platform.engine, SHIPPING_MIGRATIONS)
    blocker: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    watcher: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await add_inbox_row(watcher, "old", timedelta(hours=1))
        blocking = blocker.transaction()
        await blocking.start()
        await blocker.execute("LOCK TABLE sagakit_inbox IN ACCESS EXCLUSIVE MODE")
        await runtime.start()
        try:
            relay = runtime.relay
            assert relay is not None

            async def a_purge_waits_for_the_lock() -> bool:
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted "
                    "AND relation = 'sagakit_inbox'::regclass"
                )
                return bool(waiting)

            await eventually(a_purge_waits_for_the_lock, timeout_s=30)
            for number in range(20):
                async with platform.units() as uow:
                    uow.emit(
                        OrderShipped.first(
                            order_id=f"o-{number}", producer="test", tracking_id="t", carrier="c"
                        )
                    )
                    await uow.commit()

            async def all_published() -> bool:
                unsent = await watcher.fetchval(
                    "SELECT count(*) FROM sagakit_outbox WHERE sent_at IS NULL"
                )
                return bool(unsent == 0)

            await eventually(all_published, timeout_s=30)
            published_while_blocked = relay.stats.published
            # The purges were held up: they ran out of time (the table stays locked until here).
            purger = runtime.purger
            assert purger is not None

            async def a_purge_timed_out() -> bool:
                return purger.timed_out["sagakit_inbox"] > 0

            await eventually(a_purge_timed_out, timeout_s=30)
            leaderships = relay.stats.leaderships
            await blocking.rollback()
            # Once the lock is gone the purges go through: the sent rows and the old inbox
            # row expire (retention of one second).
            await eventually(lambda: _equals(inbox_groups(watcher), set()), timeout_s=30)

            async def outbox_emptied() -> bool:
                return bool(await watcher.fetchval("SELECT count(*) FROM sagakit_outbox") == 0)

            await eventually(outbox_emptied, timeout_s=30)
        finally:
            await runtime.stop()
    finally:
        await blocker.close()
        await watcher.close()
        await platform.redis.aclose()
        await platform.engine.dispose()

    assert published_while_blocked == 20
    assert leaderships == 1
