"""A runner process that dies mid-record, restarted: what survives depends on when offsets move.

Each test runs the runner in a child process (``test_consumer_support`` run as a module),
kills it at a precise point with ``os._exit``, starts it again and reads the effects from the
database. A sentinel event with the same key (so the same partition, behind the first one)
tells when the restarted runner has gone past the record the first one died on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE
from shared.consuming.pipeline import CRASH_EXIT_CODE
from shared.consuming.subscriptions import Delivery
from shared.contracts.events import Event
from shared.contracts.topics import Topics
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    Child,
    ChildConfig,
    Kafka,
    closed_port,
    effects_of,
    new_order,
    prepare_database,
    wait_until,
)

HANDLER_EXIT_CODE = 3


@pytest.fixture(scope="module")
async def database(infra: Infrastructure) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = await infra.create_database("consumer_crash")
    engine = await prepare_database(url)
    yield url, engine
    await engine.dispose()


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("cc"))
    ) as kafka:
        yield kafka


def child_config(
    infra: Infrastructure,
    kafka: Kafka,
    url: str,
    *,
    redis_url: str | None = None,
    delivery: Delivery = "at_least_once",
    crash_after_commit_of: list[str] | None = None,
    exit_in_handler_for: list[str] | None = None,
) -> ChildConfig:
    return ChildConfig(
        kafka=kafka.bootstrap,
        database_url=url,
        topic_prefix=kafka.topics.prefix,
        group=infra.unique("g"),
        label=infra.unique("effects"),
        redis_url=redis_url or infra.redis_url,
        delivery=delivery,
        crash_after_commit_of=crash_after_commit_of or [],
        exit_in_handler_for=exit_in_handler_for or [],
    )


@pytest.mark.parametrize("redis_state", ["redis up", "redis stopped"])
async def test_a_process_killed_after_the_db_commit_and_before_the_offset_commit_has_one_effect(
    infra: Infrastructure,
    database: tuple[str, AsyncEngine],
    kafka: Kafka,
    tmp_path: Path,
    redis_state: str,
) -> None:
    url, engine = database
    redis_url = (
        infra.redis_url if redis_state == "redis up" else f"redis://127.0.0.1:{closed_port()}"
    )
    event = new_order()
    sentinel = new_order(event.order_id)
    config = child_config(
        infra, kafka, url, redis_url=redis_url, crash_after_commit_of=[event.order_id]
    )
    await kafka.publish(event)

    first = Child(config, tmp_path / "child.log")
    await first.start()
    assert await first.exit_code() == CRASH_EXIT_CODE, first.log.read_text()
    assert await effects_of(engine, config.label) == {event.event_id: 1}

    config.crash_after_commit_of = []
    again = Child(config, tmp_path / "child.log")
    await again.start()
    await kafka.publish(sentinel)
    await wait_until(lambda: _has_effect(engine, config.label, sentinel), what="the sentinel")
    stats = await again.stop()

    assert await effects_of(engine, config.label) == {event.event_id: 1, sentinel.event_id: 1}
    assert stats["duplicates"] == 1  # the redelivered record, skipped
    assert stats["processed"] == 1


@pytest.mark.parametrize(
    ("delivery", "survives"), [("at_least_once", True), ("at_most_once", False)]
)
async def test_a_crash_between_receiving_and_handling_loses_the_event_only_at_most_once(
    infra: Infrastructure,
    database: tuple[str, AsyncEngine],
    kafka: Kafka,
    tmp_path: Path,
    delivery: Delivery,
    survives: bool,
) -> None:
    url, engine = database
    event = new_order()
    sentinel = new_order(event.order_id)
    config = child_config(
        infra, kafka, url, delivery=delivery, exit_in_handler_for=[event.order_id]
    )
    await kafka.publish(event)

    first = Child(config, tmp_path / "child.log")
    await first.start()
    assert await first.exit_code() == HANDLER_EXIT_CODE, first.log.read_text()

    config.exit_in_handler_for = []
    again = Child(config, tmp_path / "child.log")
    await again.start()
    await kafka.publish(sentinel)
    await wait_until(lambda: _has_effect(engine, config.label, sentinel), what="the sentinel")
    await again.stop()

    effects = await effects_of(engine, config.label)
    assert effects.get(event.event_id) == (1 if survives else None)
    assert effects[sentinel.event_id] == 1


async def _has_effect(engine: AsyncEngine, label: str, event: Event) -> bool:
    return event.event_id in await effects_of(engine, label)
