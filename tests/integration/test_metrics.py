"""The platform's metrics against real Kafka and PostgreSQL: what ``/metrics`` shows moves
with the records (counts per topic and outcome, lag, dead letters, the outbox backlog)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated
from shared.consuming.consumer import ConsumerRunner, Subscription
from shared.contracts.errors import TransientError
from shared.contracts.topics import Topics
from shared.observability.metrics import Metric, render
from shared.publishing.outbox import OutboxRelay, backlog_metrics
from shared.storage.db import UnitOfWork, UnitOfWorkFactory
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    Kafka,
    add_effect,
    count_effects,
    effect_handler,
    new_order,
    prepare_database,
    read_all,
    running,
    settings_for,
    wait_until,
)

LABELS = {"service": "metrics-test", "instance": "i-1"}
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scraped(families: list[Metric]) -> Samples:
    """``families`` rendered as ``/metrics`` renders them, then parsed by Prometheus' parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(render(families, LABELS).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        value
        for have, value in samples.get(name, [])
        if all(have.get(key) == wanted for key, wanted in labels.items())
    )


async def lag_of(runner: ConsumerRunner) -> float:
    return total(scraped(await runner.metrics()), "sagakit_consumer_lag_records")


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = await prepare_database(await infra.create_database("metrics"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("m"))
    ) as kafka:
        yield kafka


async def test_counts_per_topic_and_outcome_and_the_lag_follow_the_records(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    topic = kafka.topics.for_event(OrderCreated)
    group = infra.unique("g")
    gate = asyncio.Event()
    flaky = new_order("o-metrics")
    failures = 0

    async def handle(event: OrderCreated, uow: UnitOfWork) -> None:
        nonlocal failures
        await gate.wait()
        if event.event_id == flaky.event_id and failures < 2:
            failures += 1
            raise TransientError("not yet")
        await add_effect(uow, group, event)

    # One key: one partition, and its six records behind the first one's gate.
    for event in [*(new_order("o-metrics") for _ in range(4)), flaky]:
        await kafka.publish(event)
    await kafka.publish_raw(topic, b"o-metrics", b"not an event")

    async with running(
        settings_for(kafka.bootstrap, kafka.topics),
        engine,
        [Subscription(OrderCreated, handle)],
        group=group,
        topics=kafka.topics,
    ) as runner:
        await wait_until(lambda: _lag_is(runner, 6), what="a lag of the six records held back")
        gate.set()
        await wait_until(lambda: _effects_are(engine, group, 5), what="the five effects")
        await wait_until(lambda: _lag_is(runner, 0), what="the lag back to zero once committed")
        samples = scraped(await runner.metrics())
        dlq = Topics.dlq(topic)
        sizes = await runner.dead_letter_sizes([dlq])

        runner.stats.count(topic, "ok", 10_000_000)  # far past six significant digits
        after = scraped(await runner.metrics())

    events = "sagakit_consumer_events_total"
    assert total(samples, events, group=group, topic=topic, outcome="ok") == 4
    assert total(samples, events, group=group, topic=topic, outcome="retried") == 1
    assert total(samples, events, group=group, topic=topic, outcome="dead_lettered") == 1
    assert total(samples, events, group=group, topic=topic, outcome="duplicate") == 0
    assert total(samples, "sagakit_consumer_retries_total", topic=topic) >= 1
    assert total(samples, "sagakit_dlq_published_total", topic=dlq) == 1
    assert sizes == {dlq: 1}
    durations = "sagakit_handler_duration_seconds_count"
    assert total(samples, durations, group=group, event_type="OrderCreated") >= 2
    for labels, _ in samples[events]:
        assert labels["service"] == "metrics-test" and labels["instance"] == "i-1"
    assert total(after, events, topic=topic, outcome="ok") == 10_000_004


async def _lag_is(runner: ConsumerRunner, expected: int) -> bool:
    return await lag_of(runner) == expected


async def _effects_are(engine: AsyncEngine, label: str, expected: int) -> bool:
    return await count_effects(engine, label) == expected


async def test_the_outbox_backlog_and_the_publish_latency_follow_the_relay(
    infra: Infrastructure, kafka: Kafka
) -> None:
    url = await infra.create_database("metrics-outbox")
    engine = await prepare_database(url)
    relay = OutboxRelay(url, kafka.producer, poll_interval_s=0.2)
    try:
        async with UnitOfWorkFactory(engine, kafka.topics)() as uow:
            for _ in range(3):
                uow.emit(new_order())
            await uow.commit()
        await asyncio.sleep(0.2)
        waiting = scraped(await backlog_metrics(engine))

        await relay.start()

        async def published() -> bool:
            backlog = scraped(await backlog_metrics(engine))
            return total(backlog, "sagakit_outbox_unsent_rows") == 0

        await wait_until(published, what="the backlog published")
        done = scraped([*relay.metrics(), *await backlog_metrics(engine)])
    finally:
        await relay.stop()
        await engine.dispose()

    assert total(waiting, "sagakit_outbox_unsent_rows") == 3
    assert total(waiting, "sagakit_outbox_oldest_unsent_age_seconds") >= 0.2
    assert total(done, "sagakit_outbox_oldest_unsent_age_seconds") == 0
    assert total(done, "sagakit_outbox_published_total") == 3
    assert total(done, "sagakit_outbox_publish_duration_seconds_count") == 3
    assert total(done, "sagakit_outbox_leader") == 1


async def test_each_record_is_timed_from_its_outbox_rows_write_to_every_stage_of_its_hop(
    infra: Infrastructure, kafka: Kafka
) -> None:
    url = await infra.create_database("metrics-stages")
    engine = await prepare_database(url)
    topic = kafka.topics.for_event(OrderCreated)
    group = infra.unique("g")
    relay = OutboxRelay(url, kafka.producer, poll_interval_s=0.2)
    try:
        began = time.time()
        async with UnitOfWorkFactory(engine, kafka.topics)() as uow:
            for _ in range(3):
                uow.emit(new_order("o-stages"))
            await uow.session.execute(text("SELECT pg_sleep(0.3)"))  # a long transaction
            await uow.commit()
        async with engine.connect() as connection:
            written = (
                await connection.execute(text("SELECT created_at FROM sagakit_outbox"))
            ).all()
        await relay.start()
        records = await read_all(kafka.bootstrap, topic, 3)
        async with running(
            settings_for(kafka.bootstrap, kafka.topics),
            engine,
            [Subscription(OrderCreated, effect_handler(group))],
            group=group,
            topics=kafka.topics,
        ) as runner:
            await wait_until(lambda: _effects_are(engine, group, 3), what="the three effects")
            await wait_until(lambda: _lag_is(runner, 0), what="their offsets committed")
            samples = scraped([*relay.metrics(), *await runner.metrics()])
    finally:
        await relay.stop()
        await engine.dispose()

    # The rows' time is their write at the commit, not the transaction's start; and it is
    # their records' Kafka timestamp: every stage is timed from it.
    assert all(row.created_at.timestamp() >= began + 0.3 for row in written)
    stamps = sorted(round(row.created_at.timestamp() * 1000) for row in written)
    assert sorted(record.timestamp for record in records) == stamps
    relay_stages = "sagakit_outbox_stage_seconds"
    consumer_stages = "sagakit_consumer_stage_seconds"
    means = []
    for name, labels in [
        *((relay_stages, {"stage": s}) for s in ("sent", "acknowledged")),
        *(
            (consumer_stages, {"group": group, "stage": s})
            for s in ("fetched", "begun", "locked", "committed", "offset_committed")
        ),
    ]:
        count = total(samples, f"{name}_count", topic=topic, **labels)
        assert count == 3, (labels, count)
        seconds = total(samples, f"{name}_sum", topic=topic, **labels)
        assert 0 <= seconds < 3 * 60, (labels, seconds)
        means.append(seconds / count)
    assert means == sorted(means)  # each stage after the one before, for every record
