"""Event sourcing, as the seed means it: the analytics service builds its read model from the
topics on the real Kafka, PostgreSQL and Redis; ``sagakit analytics rebuild`` throws it away
and sends the group back to the earliest offsets; run again, the service makes the same
model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.analytics import store
from services.analytics.app import service
from services.events import CATALOGUE, OrderEvent
from shared.contracts.topics import Topics, encode
from shared.settings import PlatformSettings
from shared.storage.db import make_engine
from tests.analytics_support import saga
from tests.cli_support import Sagakit
from tests.infra import Infrastructure
from tests.integration.test_booking_saga import topics_ready

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # every wait below is bounded by this
START = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)


@asynccontextmanager
async def analytics(settings: PlatformSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The analytics service started in this process (its consumers too), and its HTTP API."""
    app = service.app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://analytics") as http:
            yield http


async def summary_once(http: httpx.AsyncClient, events: int) -> dict[str, Any]:
    """The summary since START once the service has counted ``events`` events."""
    async with asyncio.timeout(WAIT_S):
        while True:
            response = await http.get("/analytics/summary", params={"since": START.isoformat()})
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            if sum(found["events_by_type"].values()) >= events:
                return found
            await asyncio.sleep(0.2)


async def snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await store.snapshot(connection)
    finally:
        await engine.dispose()


async def send(infra: Infrastructure, topics: Topics, events: list[OrderEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            record = encode(event, topics)
            await producer.send_and_wait(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
    finally:
        await producer.stop()


async def test_the_rebuilt_read_model_equals_the_live_one(
    infra: Infrastructure, tmp_path: Path
) -> None:
    prefix = infra.topic_prefix("analytics")
    topics = Topics(CATALOGUE, prefix)
    await topics_ready(infra, topics, partitions=3)
    database_url = await infra.create_database("analytics")
    settings = service.settings().model_copy(
        update={
            "database_url": database_url,
            "kafka_bootstrap": infra.kafka_bootstrap,
            "redis_url": infra.redis_url,
            "topic_prefix": prefix,
            "topic_partitions": 3,
            "database_pool_size": 2,
            "database_max_overflow": 2,
        }
    )
    sagakit = Sagakit(
        {
            "SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            "SAGAKIT_TOPIC_PREFIX": prefix,
            "SAGAKIT_REDIS_URL": infra.redis_url,
            "SAGAKIT_ANALYTICS_DATABASE_URL": database_url,
        },
        tmp_path / "stack.env",
    )
    events = [
        event
        for n in range(12)
        for event in saga(
            f"o-{n}",
            START + timedelta(seconds=17 * n),
            timedelta(milliseconds=300 * (n + 1)),
            total=f"{n + 1}.25",
            cancelled="declined" if n % 4 == 0 else None,
        )
    ]
    # Ends first, and one record twice (a producer's retry): neither may change the numbers.
    await send(infra, topics, [*events[::-1], events[0]])

    async with analytics(settings) as http:
        live = await summary_once(http, len(events))
        refused = await sagakit("analytics", "rebuild", "--yes")
    live_rows = await snapshot(database_url)

    assert (live["orders_created"], live["completed"], live["cancelled"]) == (12, 9, 3)
    assert live["revenue"] == str(sum(Decimal(f"{n + 1}.25") for n in range(12) if n % 4))
    assert refused.exit_code != 0
    assert "stop them before rebuilding the read model" in refused.stderr

    rebuilt = await sagakit("analytics", "rebuild", "--yes")
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert await snapshot(database_url) == {name: [] for name in live_rows}

    async with analytics(settings) as http:
        again = await summary_once(http, len(events))
    assert again == live
    assert await snapshot(database_url) == live_rows
