"""A replayed dead letter reaches only the consumer group that dead-lettered it.

Three consumer groups read one topic, as inventory, order and analytics read
``payment-processed``; each runs a real consumer runner on real Kafka and PostgreSQL, and
the dead letters are replayed with ``sagakit dlq replay``, as an operator does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated
from shared.consuming.consumer import ConsumerRunner, Subscription
from shared.contracts.errors import PermanentError
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWork
from tests.cli_support import Ran, Sagakit
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    PARTITIONS,
    Kafka,
    add_effect,
    effects_of,
    new_order,
    prepare_database,
    running,
    settings_for,
    wait_until,
)

GROUPS = ("inventory", "order", "analytics")


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = await prepare_database(await infra.create_database("replay_groups"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("rg"))
    ) as kafka:
        yield kafka


@pytest.fixture
def sagakit(kafka: Kafka, tmp_path: Path) -> Sagakit:
    settings = {
        "SAGAKIT_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SAGAKIT_TOPIC_PREFIX": kafka.topics.prefix,
    }
    return Sagakit(settings, tmp_path / "stack.env")


async def records_in(bootstrap: str, topic: str) -> int:
    """How many records ``topic`` holds (end minus beginning offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """Whether ``group`` has committed every record of ``topic``: it consumed them all."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    ends = {
        tp: end
        for tp, end in (await _end_offsets(bootstrap, topic)).items()
        if end > 0  # a partition that never had a record has nothing to commit
    }
    return all(tp in committed and committed[tp].offset >= end for tp, end in ends.items())


async def _end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return {tp: int(end) for tp, end in ends.items()}
    finally:
        await consumer.stop()


async def all_caught_up(kafka: Kafka, groups: dict[str, str], topic: str) -> bool:
    for group in groups.values():
        if not await caught_up(kafka.bootstrap, group, topic):
            return False
    return True


def succeeded(ran: Ran) -> Ran:
    assert ran.exit_code == 0, ran.stderr
    return ran


async def test_a_record_that_still_fails_adds_one_dead_letter_per_group_per_replay(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka, sagakit: Sagakit
) -> None:
    topic = kafka.topics.for_event(OrderCreated)
    dlq = Topics.dlq(topic)
    groups = {name: infra.unique(name) for name in GROUPS}
    async with AsyncExitStack() as stack:
        runners: list[ConsumerRunner] = [
            await stack.enter_async_context(
                running(
                    settings_for(kafka.bootstrap, kafka.topics),
                    engine,
                    [Subscription(OrderCreated, _no_effect)],
                    group=group,
                    topics=kafka.topics,
                )
            )
            for group in groups.values()
        ]
        await kafka.publish_raw(topic, b"o-poison", b"not an event, and never will be")
        await wait_until(lambda: _dead_letters(kafka, dlq, 3), what="one dead letter per group")

        for round_ in range(1, 4):
            replayed = succeeded(await sagakit("dlq", "replay", dlq, "--all"))
            # One copy per group: the dead letters of earlier replays of the same record
            # for the same group are not sent again.
            assert replayed.stdout.splitlines()[-1] == f"replayed 3 dead letter(s) from {dlq}"
            await wait_until(
                lambda: all_caught_up(kafka, groups, topic), what="every copy consumed"
            )
            # Every group read the three copies, and only the one meant for it failed again.
            assert await records_in(kafka.bootstrap, dlq) == 3 + 3 * round_
            for runner in runners:
                assert runner.stats.dead_lettered == 1 + round_
                assert runner.stats.replay_skipped == 2 * round_


async def test_a_good_event_replayed_is_handled_by_the_group_that_dead_lettered_it_only(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka, sagakit: Sagakit
) -> None:
    topic = kafka.topics.for_event(OrderCreated)
    dlq = Topics.dlq(topic)
    groups = {name: infra.unique(name) for name in GROUPS}
    event = new_order()
    refused_once: list[uuid.UUID] = []

    def handler(name: str):  # type: ignore[no-untyped-def]
        async def handle(event: OrderCreated, uow: UnitOfWork) -> None:
            if name == "inventory" and not refused_once:
                refused_once.append(event.event_id)
                raise PermanentError("injected permanent fault")
            await add_effect(uow, groups[name], event)

        return handle

    async with AsyncExitStack() as stack:
        runners = {
            name: await stack.enter_async_context(
                running(
                    settings_for(kafka.bootstrap, kafka.topics),
                    engine,
                    [Subscription(OrderCreated, handler(name))],
                    group=group,
                    topics=kafka.topics,
                )
            )
            for name, group in groups.items()
        }
        await kafka.publish(event)
        await wait_until(lambda: _dead_letters(kafka, dlq, 1), what="inventory's dead letter")
        await wait_until(lambda: all_caught_up(kafka, groups, topic), what="the first copy")
        handled_before = {name: runner.stats.processed for name, runner in runners.items()}

        succeeded(await sagakit("dlq", "replay", dlq, "--event-id", str(event.event_id)))
        await wait_until(
            lambda: _has_effect(engine, groups["inventory"], event.event_id),
            what="inventory handles the replayed copy",
        )
        await wait_until(lambda: all_caught_up(kafka, groups, topic), what="the replayed copy")

    for name in ("order", "analytics"):
        stats = runners[name].stats
        # They consumed the copy (their offsets passed it) and left it alone: not even a
        # duplicate, which would have cost them an inbox lookup.
        assert (stats.replay_skipped, stats.duplicates) == (1, 0)
        assert stats.processed == handled_before[name] == 1
        assert await effects_of(engine, groups[name]) == {event.event_id: 1}
    assert await effects_of(engine, groups["inventory"]) == {event.event_id: 1}
    assert runners["inventory"].stats.replay_skipped == 0
    assert await records_in(kafka.bootstrap, dlq) == 1


async def _no_effect(event: OrderCreated, uow: UnitOfWork) -> None:
    return None


async def _dead_letters(kafka: Kafka, dlq: str, at_least: int) -> bool:
    return await records_in(kafka.bootstrap, dlq) >= at_least


async def _has_effect(engine: AsyncEngine, label: str, event_id: uuid.UUID) -> bool:
    return event_id in await effects_of(engine, label)
