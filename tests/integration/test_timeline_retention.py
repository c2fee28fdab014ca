"""The order service's timeline retention, against a real PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE
from services.order.app import OrderSettings, service
from services.order.model import OrderStatus
from shared.app.platform import Platform
from shared.contracts.topics import Topics
from shared.publishing.purger import Purge, RetentionPurger
from shared.storage.db import UnitOfWorkFactory, asyncpg_dsn, make_engine
from shared.storage.migrations import upgrade_to_head
from tests.infra import Infrastructure
from tests.integration.test_order_queries import place

MIGRATIONS = Path(__file__).parents[2] / "services" / "order" / "migrations"
HOUR = timedelta(hours=1)


@pytest.fixture
async def database(infra: Infrastructure) -> AsyncIterator[str]:
    url = await infra.create_database("timeline_retention")
    engine = make_engine(url)
    await upgrade_to_head(engine, MIGRATIONS)
    await engine.dispose()
    yield url


@pytest.fixture
async def engine(database: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(database: str) -> AsyncIterator[asyncpg.Connection]:
    connection: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(database))
    yield connection
    await connection.close()


def purges_of(settings: OrderSettings) -> list[Purge]:
    """The retention rules the order service's declaration adds to the platform's."""
    platform = Platform.configure(settings, CATALOGUE, service.fault_kinds)
    return list(service.purges(platform))


async def add_event(connection: asyncpg.Connection, order_id: str, age: timedelta) -> None:
    await connection.execute(
        "INSERT INTO timeline (event_id, order_id, event_type, occurred_at, producer, payload) "
        "VALUES ($1, $2, 'OrderCreated', now() - $3::interval, 'test', '{}')",
        uuid.uuid4(),
        order_id,
        age,
    )


async def timelines(connection: asyncpg.Connection) -> dict[str, int]:
    rows = await connection.fetch("SELECT order_id, count(*) FROM timeline GROUP BY order_id")
    return {row[0]: row[1] for row in rows}


async def test_the_timeline_is_kept_for_ever_unless_a_retention_is_set(database: str) -> None:
    assert purges_of(OrderSettings(database_url=database)) == []


async def test_timelines_of_orders_finished_before_the_window_are_purged_and_no_others(
    database: str, engine: AsyncEngine, connection: asyncpg.Connection
) -> None:
    units = UnitOfWorkFactory(engine, Topics(CATALOGUE))
    customer = "c-timeline"
    finished_long_ago = await place(units, customer, OrderStatus.COMPLETED, moved_ago=2 * HOUR)
    cancelled_long_ago = await place(units, customer, OrderStatus.CANCELLED, moved_ago=3 * HOUR)
    finished_recently = await place(units, customer, OrderStatus.CANCELLED, moved_ago=HOUR / 6)
    still_waiting = await place(units, customer, OrderStatus.PAID, moved_ago=2 * HOUR)
    for order_id in (finished_long_ago, cancelled_long_ago, finished_recently, still_waiting):
        await add_event(connection, order_id, 3 * HOUR)
        await add_event(connection, order_id, 2 * HOUR)
    purges = purges_of(OrderSettings(database_url=database, timeline_retention_seconds=3600))
    # Batches of one: the purge goes on until a batch comes back short.
    purger = RetentionPurger(database, purges, batch_size=1)

    await purger.purge_once(connection)

    assert await timelines(connection) == {finished_recently: 2, still_waiting: 2}
    assert purger.purged["timeline"] == 4


async def test_the_timeline_purge_reads_the_expired_range_of_an_index(
    database: str, connection: asyncpg.Connection
) -> None:
    """On tables of some size (the planner's choice depends on it), the purge walks the
    timeline's oldest events, not every order ever finished (a range that only grows)."""
    await connection.execute(
        "INSERT INTO orders (order_id, customer_id, items, total, status, updated_at) "
        "SELECT 'o-' || n, 'c', '[]', 1, CASE WHEN n % 10 = 0 THEN 'PAID' ELSE 'COMPLETED' END, "
        "now() - n * interval '1 second' FROM generate_series(1, 20000) AS n"
    )
    await connection.execute(
        "INSERT INTO timeline (event_id, order_id, event_type, occurred_at, producer, payload) "
        "SELECT gen_random_uuid(), 'o-' || (n / 4 + 1), 'OrderCreated', "
        "now() - n * interval '250 milliseconds', 'test', '{}' "
        "FROM generate_series(0, 79999) AS n"
    )
    await connection.execute("ANALYZE orders")
    await connection.execute("ANALYZE timeline")
    [purge] = purges_of(OrderSettings(database_url=database, timeline_retention_seconds=3600))

    plan = await connection.fetch(f"EXPLAIN {purge.statement.sql}", HOUR, 1000)

    shown = "\n".join(row[0] for row in plan)
    assert "timeline_occurred_at" in shown, shown
