"""Groups: instances share partitions, a rebalance loses and repeats nothing, groups fan out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from functools import partial

import pytest
from aiokafka.partitioner import murmur2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated
from shared.consuming.consumer import ConsumerRunner, Subscription
from shared.contracts.errors import TransientError
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWork, UnitOfWorkFactory
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    CONSUMER_OPTIONS,
    PARTITIONS,
    Kafka,
    add_effect,
    count_effects,
    effect_handler,
    effects_of,
    new_order,
    prepare_database,
    running,
    settings_for,
    wait_until,
)


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = await prepare_database(await infra.create_database("consumer_groups"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("cg"))
    ) as kafka:
        yield kafka


def split_evenly(runners: Sequence[ConsumerRunner]) -> bool:
    owned = [runner.assigned_partitions for runner in runners]
    every = set().union(*owned)
    return (
        len(every) == PARTITIONS
        and sum(len(each) for each in owned) == PARTITIONS
        and all(len(each) == PARTITIONS // len(runners) for each in owned)
    )


async def publish_orders(kafka: Kafka, count: int, *, pause_s: float = 0.0) -> list[OrderCreated]:
    events = [new_order() for _ in range(count)]
    for event in events:
        await kafka.publish(event)
        await asyncio.sleep(pause_s)
    return events


async def publish_until(
    kafka: Kafka, events: list[OrderCreated], stop: asyncio.Event, *, pause_s: float
) -> None:
    """Publish new orders into ``events`` until ``stop`` is set."""
    while not stop.is_set():
        event = new_order()
        await kafka.publish(event)
        events.append(event)
        await asyncio.sleep(pause_s)


async def test_two_instances_split_the_partitions_and_a_third_joins_without_losing_or_repeating(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group, label = infra.unique("g"), infra.unique("effects")

    async def slow_effect(event: OrderCreated, uow: UnitOfWork) -> None:
        await asyncio.sleep(0.005)  # keeps records in flight while the group rebalances
        await add_effect(uow, label, event)

    subscriptions = [Subscription(OrderCreated, slow_effect)]
    settings = settings_for(kafka.bootstrap, kafka.topics)
    async with AsyncExitStack() as stack:
        runners = [
            await stack.enter_async_context(
                running(settings, engine, subscriptions, group=group, topics=kafka.topics)
            )
            for _ in range(2)
        ]
        await wait_until(lambda: _true(split_evenly(runners)), what="two instances, 3 + 3")

        # Orders keep coming until well after the third instance has its partitions: the
        # rebalance happens while records are in flight, however slow the machine.
        events: list[OrderCreated] = []
        rebalanced = asyncio.Event()
        publishing = asyncio.create_task(publish_until(kafka, events, rebalanced, pause_s=0.005))
        await wait_until(lambda: _at_least(engine, label, 50), what="the first effects")
        runners.append(
            await stack.enter_async_context(
                running(settings, engine, subscriptions, group=group, topics=kafka.topics)
            )
        )
        await wait_until(lambda: _true(split_evenly(runners)), what="three instances, 2 each")
        published_before = len(events)
        await wait_until(
            lambda: _true(len(events) >= published_before + 50), what="orders after the rebalance"
        )
        rebalanced.set()
        await publishing
        await wait_until(lambda: _at_least(engine, label, len(events)), what="every effect")

    effects = await effects_of(engine, label)
    assert effects.keys() == {event.event_id for event in events}
    assert set(effects.values()) == {1}
    assert sum(runner.stats.processed for runner in runners) == len(events)


async def test_two_groups_each_receive_every_event(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    labels = [infra.unique("payment"), infra.unique("timeline")]
    settings = settings_for(kafka.bootstrap, kafka.topics)
    events = await publish_orders(kafka, 40)

    async with AsyncExitStack() as stack:
        for label in labels:
            await stack.enter_async_context(
                running(
                    settings,
                    engine,
                    [Subscription(OrderCreated, effect_handler(label))],
                    group=label,
                    topics=kafka.topics,
                )
            )
        for label in labels:
            await wait_until(partial(_at_least, engine, label, len(events)), what=label)

    for label in labels:
        assert await effects_of(engine, label) == {event.event_id: 1 for event in events}


async def test_stopping_finishes_the_record_in_hand_and_commits_so_a_restart_repeats_nothing(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group, label = infra.unique("g"), infra.unique("effects")
    started = asyncio.Event()

    async def slow(event: OrderCreated, uow: UnitOfWork) -> None:
        started.set()
        await asyncio.sleep(0.5)
        await add_effect(uow, label, event)

    settings = settings_for(kafka.bootstrap, kafka.topics)
    events = await publish_orders(kafka, 10)
    slow_one = new_order()
    async with running(
        settings, engine, [Subscription(OrderCreated, slow)], group=group, topics=kafka.topics
    ):
        await wait_until(lambda: _at_least(engine, label, len(events)), what="the first events")
        started.clear()
        await kafka.publish(slow_one)
        await asyncio.wait_for(started.wait(), 30)
    assert slow_one.event_id in await effects_of(engine, label)  # drained, not cancelled

    sentinel = new_order()
    async with running(
        settings,
        engine,
        [Subscription(OrderCreated, effect_handler(label))],
        group=group,
        topics=kafka.topics,
    ) as restarted:
        await kafka.publish(sentinel)
        await wait_until(lambda: _at_least(engine, label, len(events) + 2), what="the sentinel")

    assert (restarted.stats.processed, restarted.stats.duplicates) == (1, 0)


def partition_of(key: str) -> int:
    """The partition aiokafka's default partitioner picks for ``key``."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % PARTITIONS


async def test_a_record_retrying_longer_than_the_poll_interval_keeps_the_instance_in_its_group(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    label = infra.unique("effects")
    stuck = new_order()
    recovered = asyncio.Event()

    async def stuck_until_recovered(event: OrderCreated, uow: UnitOfWork) -> None:
        if event.order_id == stuck.order_id and not recovered.is_set():
            raise TransientError("the ledger is locked")
        await add_effect(uow, label, event)

    settings = settings_for(
        kafka.bootstrap,
        kafka.topics,
        retry_attempts=1000,
        retry_base_delay_ms=200,
        retry_max_delay_ms=200,
    )
    runner = ConsumerRunner(
        group_id=infra.unique("g"),
        subscriptions=[Subscription(OrderCreated, stuck_until_recovered)],
        settings=settings,
        units=UnitOfWorkFactory(engine, kafka.topics),
        topics=kafka.topics,
        consumer_options={**CONSUMER_OPTIONS, "max_poll_interval_ms": 2000},
    )
    await kafka.publish(stuck)
    await runner.start()
    try:
        await wait_until(lambda: _true(runner.stats.retried > 0), what="the first retry")
        first_retry_at = time.monotonic()
        others = [
            event
            for event in (new_order() for _ in range(60))
            if partition_of(event.order_id) != partition_of(stuck.order_id)
        ][:20]
        for event in others:
            await kafka.publish(event)
        await wait_until(lambda: _at_least(engine, label, len(others)), what="other partitions")
        # Still retrying well past max_poll_interval_ms (2 s) since the first retry: a retry
        # that starts after that point proves the instance went on, and it was never sent
        # out of its group.
        past_the_interval = first_retry_at + 3.0
        await wait_until(
            lambda: _true(time.monotonic() > past_the_interval), what="3 s of retrying"
        )
        retried = runner.stats.retried
        await wait_until(lambda: _true(runner.stats.retried > retried), what="a later retry")
        assert runner.stats.rebalances == 1
        assert len(runner.assigned_partitions) == PARTITIONS

        recovered.set()
        await wait_until(lambda: _at_least(engine, label, len(others) + 1), what="the stuck one")
    finally:
        await runner.stop()

    assert runner.stats.rebalances == 1
    assert (await effects_of(engine, label))[stuck.event_id] == 1


async def test_a_rebalance_abandons_a_record_waiting_for_its_retry_and_the_next_owner_takes_it(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group, label = infra.unique("g"), infra.unique("effects")
    event = new_order()
    recovered = asyncio.Event()

    async def fails_until_recovered(event: OrderCreated, uow: UnitOfWork) -> None:
        if not recovered.is_set():
            raise TransientError("the ledger is locked")
        await add_effect(uow, label, event)

    # One long backoff: a revocation that waited for it would hold the rebalance for 60 s.
    settings = settings_for(
        kafka.bootstrap,
        kafka.topics,
        retry_attempts=10,
        retry_base_delay_ms=60_000,
        retry_max_delay_ms=60_000,
    )
    subscriptions = [Subscription(OrderCreated, fails_until_recovered)]
    await kafka.publish(event)
    async with running(settings, engine, subscriptions, group=group, topics=kafka.topics) as first:
        await wait_until(lambda: _true(first.stats.retried == 1), what="the first retry")
        recovered.set()  # the first instance would only notice in 60 s, at its next attempt
        async with running(
            settings, engine, subscriptions, group=group, topics=kafka.topics
        ) as second:
            await wait_until(lambda: _true(split_evenly([first, second])), what="3 + 3")
            # Within 45 s of the join, while the first instance's backoff still has 15 s or
            # more to run: the rebalance did not wait for it (the margin is the proof, so it
            # is wide: no tighter clock than that is asserted).
            await wait_until(lambda: _at_least(engine, label, 1), timeout_s=45, what="the effect")

    assert await effects_of(engine, label) == {event.event_id: 1}


async def _true(value: bool) -> bool:
    return value


async def _at_least(engine: AsyncEngine, label: str, count: int) -> bool:
    return await count_effects(engine, label) >= count
