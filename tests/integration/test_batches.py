"""Runs of records in one transaction (shared.consuming.pipeline), against real Kafka,
PostgreSQL and Redis.

Every test publishes its records with one key, so they share a partition and arrive in one
poll, before the runner starts: the runner then sees them as one run (or a few, when the
batch size is small).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated
from shared.consuming.consumer import ConsumerRunner, Subscription
from shared.contracts.errors import PermanentError, TransientError
from shared.contracts.topics import Topics, encode
from shared.storage.db import UnitOfWork, UnitOfWorkFactory
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    CONSUMER_OPTIONS,
    Child,
    ChildConfig,
    Kafka,
    add_effect,
    count_effects,
    effects_of,
    new_order,
    prepare_database,
    read_all,
    running,
    settings_for,
    wait_until,
)


@pytest.fixture(scope="module")
async def database(infra: Infrastructure) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = await infra.create_database("batches")
    engine = await prepare_database(url)
    yield url, engine
    await engine.dispose()


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("b"))
    ) as kafka:
        yield kafka


async def publish_orders(kafka: Kafka, count: int) -> list[OrderCreated]:
    """``count`` events of one order id: one partition, in this order."""
    first = new_order()
    events = [first, *(new_order(first.order_id) for _ in range(count - 1))]
    for event in events:
        await kafka.publish(event)
    return events


async def test_a_run_is_handled_in_one_transaction_and_each_event_takes_effect_once(
    infra: Infrastructure, database: tuple[str, AsyncEngine], kafka: Kafka
) -> None:
    _, engine = database
    label = infra.unique("effects")
    calls: list[int] = []

    async def handle_all(events: Sequence[OrderCreated], uow: UnitOfWork) -> None:
        calls.append(len(events))
        for event in events:
            await add_effect(uow, label, event)

    events = await publish_orders(kafka, 20)
    settings = settings_for(kafka.bootstrap, kafka.topics)
    group = infra.unique("g")
    subscriptions = [Subscription.batched(OrderCreated, handle_all)]
    async with running(settings, engine, subscriptions, group=group, topics=kafka.topics) as r:
        await wait_until(lambda: _count(engine, label, 20), what="20 effects")
        stats = r.stats

    assert await effects_of(engine, label) == {event.event_id: 1 for event in events}
    assert sum(calls) == 20 and max(calls) > 1  # the handler took several events at once
    assert stats.batches >= 1 and stats.batched == 20 and stats.batch_fallbacks == 0


async def test_a_failing_record_mid_run_is_dead_lettered_alone_and_the_others_take_effect_once(
    infra: Infrastructure, database: tuple[str, AsyncEngine], kafka: Kafka
) -> None:
    _, engine = database
    label = infra.unique("effects")
    events = await publish_orders(kafka, 9)
    poison = events[4]

    async def handle(event: OrderCreated, uow: UnitOfWork) -> None:
        await add_effect(uow, label, event)
        if event.event_id == poison.event_id:
            raise PermanentError("this one can never be handled")

    settings = settings_for(kafka.bootstrap, kafka.topics)
    group = infra.unique("g")
    subscriptions = [Subscription(OrderCreated, handle)]
    async with running(settings, engine, subscriptions, group=group, topics=kafka.topics) as r:
        dead = await read_all(kafka.bootstrap, Topics.dlq(kafka.topics.for_event(OrderCreated)), 1)
        await wait_until(lambda: _count(engine, label, 8), what="8 effects")
        stats = r.stats

    assert dead[0].value == poison.to_json()
    assert dict(dead[0].headers)["dlq.attempts"] == b"1"
    # The run failed together, so it was taken again one record at a time: the poison record
    # alone went to the DLQ, its effect rolled back; the others took effect exactly once.
    expected = {event.event_id: 1 for event in events if event is not poison}
    assert await effects_of(engine, label) == expected
    assert stats.batch_fallbacks == 1 and stats.dead_lettered == 1 and stats.processed == 8


async def test_a_record_failing_transiently_mid_run_is_retried_alone_and_everything_lands_once(
    infra: Infrastructure, database: tuple[str, AsyncEngine], kafka: Kafka
) -> None:
    _, engine = database
    label = infra.unique("effects")
    events = await publish_orders(kafka, 9)
    flaky, failures = events[3], [2]  # fails in the run, then once more on its own

    async def handle(event: OrderCreated, uow: UnitOfWork) -> None:
        await add_effect(uow, label, event)
        if event.event_id == flaky.event_id and failures[0] > 0:
            failures[0] -= 1
            raise TransientError("the ledger is busy")

    settings = settings_for(kafka.bootstrap, kafka.topics)
    group = infra.unique("g")
    subscriptions = [Subscription(OrderCreated, handle)]
    async with running(settings, engine, subscriptions, group=group, topics=kafka.topics) as r:
        await wait_until(lambda: _count(engine, label, 9), what="9 effects")
        stats = r.stats

    assert await effects_of(engine, label) == {event.event_id: 1 for event in events}
    assert stats.batch_fallbacks == 1 and stats.retried == 1 and stats.dead_lettered == 0


async def test_a_process_killed_mid_run_repeats_nothing_after_its_restart(
    infra: Infrastructure, database: tuple[str, AsyncEngine], kafka: Kafka, tmp_path: Path
) -> None:
    url, engine = database
    events = await publish_orders(kafka, 40)
    config = ChildConfig(
        kafka=kafka.bootstrap,
        database_url=url,
        topic_prefix=kafka.topics.prefix,
        group=infra.unique("g"),
        label=infra.unique("effects"),
        redis_url=infra.redis_url,
        handler_delay_ms=40,  # runs of 10: each transaction stays open for 0.4 s
        batch_size=10,
    )
    first = Child(config, tmp_path / "child.log")
    await first.start()
    # Killed once the first run has committed, while the next one is in its transaction,
    # and before the offsets are committed (the runner commits them once a second).
    await wait_until(lambda: _count(engine, config.label, 10), what="the first run")
    await first.kill()
    committed = await count_effects(engine, config.label)
    assert 10 <= committed < 40

    again = Child(config, tmp_path / "child.log")
    await again.start()
    await wait_until(lambda: _count(engine, config.label, 40), what="all 40 effects")
    stats = await again.stop()

    assert await effects_of(engine, config.label) == {event.event_id: 1 for event in events}
    # What the first process committed came again and was skipped, never done twice.
    assert stats["processed"] == 40 - committed
    assert stats["duplicates"] >= 1


async def test_a_rebalance_mid_run_rolls_the_run_back_and_the_new_owner_does_it_once(
    infra: Infrastructure,
    database: tuple[str, AsyncEngine],
    kafka: Kafka,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.consuming.partitions")
    _, engine = database
    label = infra.unique("effects")
    events = await publish_orders(kafka, 30)
    started = asyncio.Event()

    async def slow(event: OrderCreated, uow: UnitOfWork) -> None:
        started.set()
        await add_effect(uow, label, event)
        await asyncio.sleep(0.1)  # a run of 30: 3 s in its transaction

    group = infra.unique("g")
    settings = settings_for(kafka.bootstrap, kafka.topics)
    units = UnitOfWorkFactory(engine, kafka.topics)

    def runner() -> ConsumerRunner:
        return ConsumerRunner(
            group_id=group,
            subscriptions=[Subscription(OrderCreated, slow)],
            settings=settings,
            units=units,
            topics=kafka.topics,
            revoke_grace_s=0.5,  # shorter than the run: the revocation cancels it
            consumer_options=CONSUMER_OPTIONS,
        )

    first, second = runner(), runner()
    await first.start()
    try:
        await asyncio.wait_for(started.wait(), 30)
        await second.start()  # the group rebalances while the first is mid-run
        await wait_until(lambda: _count(engine, label, 30), what="30 effects")
    finally:
        await second.stop()
        await first.stop()

    assert await effects_of(engine, label) == {event.event_id: 1 for event in events}
    assert first.stats.rebalances >= 2
    # The run was still in its transaction when the partition was taken away.
    assert any("still busy" in record.getMessage() for record in caplog.records)


async def _count(engine: AsyncEngine, label: str, at_least: int) -> bool:
    return await count_effects(engine, label) >= at_least


# Advisory locks some transaction of this database waits for: a transaction queued behind
# the group's lock.
_WAITING_ON_AN_ADVISORY_LOCK = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def test_a_record_taken_alone_after_its_run_failed_cannot_deadlock_with_the_groups_next_run(
    infra: Infrastructure, database: tuple[str, AsyncEngine], kafka: Kafka
) -> None:
    _, engine = database
    rows, label = infra.unique("rows"), infra.unique("effects")
    first_row, second_row = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as connection:
        for row in (first_row, second_row):
            await connection.execute(
                text("INSERT INTO consumer_effects (label, event_id, n) VALUES (:l, :id, 0)"),
                {"l": rows, "id": row},
            )
    # Two events that lock the same two rows in opposite orders, as two orders of
    # inventory's lock the same skus: the one taken alone after its run failed locks the
    # second row first, the group's next run the first row first.
    alone, batched = new_order(), new_order()
    holds = {alone.event_id: asyncio.Event(), batched.event_id: asyncio.Event()}
    sqlstates: list[str] = []
    failed_in_its_run = asyncio.Event()

    async def bump(uow: UnitOfWork, row: uuid.UUID) -> None:
        try:
            await uow.session.execute(
                text("UPDATE consumer_effects SET n = n + 1 WHERE label = :l AND event_id = :id"),
                {"l": rows, "id": row},
            )
        except DBAPIError as error:
            sqlstates.append(str(getattr(error.orig, "sqlstate", "")))
            raise

    async def other_holds_or_waits(partner: uuid.UUID) -> None:
        """Until the partner holds its first row, or a transaction waits for the group lock."""
        async with engine.connect() as connection:
            for _ in range(600):  # 30 s
                if holds[partner].is_set():
                    return
                if await connection.scalar(_WAITING_ON_AN_ADVISORY_LOCK):
                    return
                await connection.rollback()
                await asyncio.sleep(0.05)
        sqlstates.append("neither held nor waited within 30 s")

    async def handle(event: OrderCreated, uow: UnitOfWork) -> None:
        if event.event_id == alone.event_id and not failed_in_its_run.is_set():
            failed_in_its_run.set()
            raise TransientError("fails in its run: taken alone next")
        mine, theirs, partner = (
            (second_row, first_row, batched.event_id)
            if event.event_id == alone.event_id
            else (first_row, second_row, alone.event_id)
        )
        await bump(uow, mine)
        holds[event.event_id].set()
        await other_holds_or_waits(partner)
        await bump(uow, theirs)
        await add_effect(uow, label, event)

    settings = settings_for(kafka.bootstrap, kafka.topics, retry_base_delay_ms=200)
    subscriptions = [Subscription(OrderCreated, handle)]
    async with running(
        settings, engine, subscriptions, group=infra.unique("g"), topics=kafka.topics
    ) as runner:
        await publish_to(kafka, alone, partition=0)
        await asyncio.wait_for(failed_in_its_run.wait(), 30)
        await publish_to(kafka, batched, partition=1)  # the group's next transaction
        await wait_until(lambda: _count(engine, label, 2), what="both effects")
        stats = runner.stats

    assert sqlstates == []  # no 40P01 deadlock_detected, nothing else either
    assert await effects_of(engine, label) == {alone.event_id: 1, batched.event_id: 1}
    assert await effects_of(engine, rows) == {first_row: 2, second_row: 2}
    assert stats.retried == 1 and stats.dead_lettered == 0


async def publish_to(kafka: Kafka, event: OrderCreated, *, partition: int) -> None:
    """Send ``event`` as the relay would, to ``partition`` whatever its key."""
    record = encode(event, kafka.topics)
    await kafka.producer.send_and_wait(
        record.topic,
        value=record.value,
        key=record.key,
        headers=list(record.headers),
        partition=partition,
    )
