"""A consumer keeps polling, and says so when it cannot: real Kafka, PostgreSQL.

A runner whose poll loop has ended, or has not come back from a poll for longer than its
bound, consumes nothing while the process still answers: ``check_polling`` (one of the
checks of ``/readyz``) then fails, naming the group.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated
from shared.consuming.consumer import ConsumerRunner, Subscription
from shared.consuming.partitions import PartitionWorkers
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    CONSUMER_OPTIONS,
    Kafka,
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
    engine = await prepare_database(await infra.create_database("liveness"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("l"))
    ) as kafka:
        yield kafka


async def test_a_round_that_fails_with_records_in_hand_reads_them_again(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only getmany's failures were caught: one anywhere else in a round (here handing the
    # polled records to their partition) ended the loop, and the runner consumed nothing
    # from then on. Kept polling, it must also not lose the records the round had fetched.
    group = infra.unique("g")
    failed = asyncio.Event()
    dispatch = PartitionWorkers.dispatch

    def dispatch_failing_once(self: PartitionWorkers, tp: Any, records: Any) -> None:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("an unexpected failure in a poll round")
        dispatch(self, tp, records)

    monkeypatch.setattr(PartitionWorkers, "dispatch", dispatch_failing_once)
    event = new_order()
    await kafka.publish(event)
    async with running(
        settings_for(kafka.bootstrap, kafka.topics),
        engine,
        [Subscription(OrderCreated, effect_handler(group))],
        group=group,
        topics=kafka.topics,
    ) as runner:

        async def handled() -> bool:
            return event.event_id in await effects_of(engine, group)

        await wait_until(handled, what="the event of the failed round handled")
        assert failed.is_set()
        runner.check_polling()  # and it says it is polling

    assert await effects_of(engine, group) == {event.event_id: 1}


async def test_a_poll_that_does_not_come_back_fails_the_check_naming_the_group(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = infra.unique("g")
    hang = asyncio.Event()
    getmany = AIOKafkaConsumer.getmany

    async def getmany_until_hung(self: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        if hang.is_set():
            await asyncio.Event().wait()  # never comes back (cancelled by stop)
        return await getmany(self, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany_until_hung)
    runner = ConsumerRunner(
        group_id=group,
        subscriptions=[Subscription(OrderCreated, effect_handler(group))],
        settings=settings_for(kafka.bootstrap, kafka.topics),
        units=UnitOfWorkFactory(engine, kafka.topics),
        topics=kafka.topics,
        consumer_options=CONSUMER_OPTIONS,
        poll_stall_s=1.0,
    )
    await runner.start()
    try:

        async def joined() -> bool:
            return runner.joined

        await wait_until(joined, what="the first assignment")
        runner.check_polling()  # polling: no error

        hang.set()

        async def stalled() -> bool:
            try:
                runner.check_polling()
            except RuntimeError:
                return True
            return False

        await wait_until(stalled, what="the check to fail once the poll hangs")
        with pytest.raises(RuntimeError, match=f"{group}: no poll has come back for"):
            runner.check_polling()
        assert runner.seconds_since_poll() >= 1.0
    finally:
        await runner.stop()
