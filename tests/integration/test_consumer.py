"""The consumer runner against real Kafka, PostgreSQL and Redis: poison, retries, duplicates,
and a poll loop that keeps going (or says it cannot)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated, PaymentFailed
from shared.consuming.consumer import Subscription
from shared.consuming.inbox import Deduplicator
from shared.consuming.partitions import PartitionWorkers
from shared.contracts.errors import PermanentError, TransientError
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWork
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    Kafka,
    add_effect,
    closed_port,
    effect_handler,
    effects_of,
    new_order,
    prepare_database,
    read_all,
    running,
    settings_for,
    wait_until,
)

CONTRACT_DLQ_HEADERS = {
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.consumer.group",
    "dlq.error.type",
    "dlq.error.message",
    "dlq.attempts",
    "dlq.failed_at",
}


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = await prepare_database(await infra.create_database("consumer"))
    yield engine
    await engine.dispose()


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("c"))
    ) as kafka:
        yield kafka


async def test_poison_records_are_dead_lettered_byte_for_byte_and_the_next_record_is_processed(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    topic = kafka.topics.for_event(OrderCreated)
    good = new_order("o-poison")
    missing_field = json.loads(new_order("o-poison").to_json())
    del missing_field["customer_id"]
    misrouted = PaymentFailed.first(
        order_id="o-poison", producer="payment", customer_id="c", amount="1.00", reason="x"
    )
    poison = [
        (b"\x00\xff random bytes \x9c", [("trace", b"\x01\x02")]),
        (json.dumps({"event_type": "NoSuchEvent", "order_id": "o-poison"}).encode(), []),
        (json.dumps(missing_field).encode(), [("event_type", b"OrderCreated")]),
        (misrouted.to_json(), []),
    ]
    for value, extra_headers in poison:
        await kafka.publish_raw(topic, b"o-poison", value, extra_headers)
    await kafka.publish(good)
    group = infra.unique("g")

    async with running(
        settings_for(kafka.bootstrap, kafka.topics),
        engine,
        [Subscription(OrderCreated, effect_handler(group))],
        group=group,
        topics=kafka.topics,
    ) as runner:
        await wait_until(
            lambda: _has_effect(engine, group, good.event_id), what="the good record's effect"
        )
        dead = await read_all(kafka.bootstrap, Topics.dlq(topic), expected=len(poison))

    assert runner.stats.dead_lettered == len(poison)
    assert runner.stats.processed == 1
    assert [(r.key, r.value) for r in dead] == [(b"o-poison", value) for value, _ in poison]
    for record, (_, sent_headers) in zip(dead, poison, strict=True):
        headers = dict(record.headers)
        assert list(record.headers)[: len(sent_headers)] == sent_headers
        assert headers.keys() >= CONTRACT_DLQ_HEADERS
        assert headers["dlq.original.topic"] == topic.encode()
        assert headers["dlq.consumer.group"] == group.encode()
        assert headers["dlq.error.type"] in (b"NotAnEvent", b"MisroutedEvent")
        assert headers["dlq.attempts"] == b"1"
        assert headers["dlq.failed_at"].endswith(b"Z")
        assert headers["dlq.error.message"]
    offsets = [int(dict(r.headers)["dlq.original.offset"]) for r in dead]
    partitions = {dict(r.headers)["dlq.original.partition"] for r in dead}
    assert offsets == sorted(offsets) and len(partitions) == 1
    assert b"customer_id" in dict(dead[2].headers)["dlq.error.message"]
    assert dict(dead[3].headers)["dlq.error.type"] == b"MisroutedEvent"


async def test_a_handler_that_fails_twice_transiently_then_succeeds_has_its_effect_once(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group = infra.unique("g")
    attempts = 0

    async def flaky(event: OrderCreated, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await add_effect(uow, group, event)  # written, then rolled back by the failure
        if attempts <= 2:
            raise TransientError(f"attempt {attempts} times out")

    event = new_order()
    await kafka.publish(event)
    async with running(
        settings_for(kafka.bootstrap, kafka.topics, retry_attempts=3),
        engine,
        [Subscription(OrderCreated, flaky)],
        group=group,
        topics=kafka.topics,
    ) as runner:
        await wait_until(lambda: _has_effect(engine, group, event.event_id), what="the effect")

    assert attempts == 3
    assert await effects_of(engine, group) == {event.event_id: 1}
    assert (runner.stats.retried, runner.stats.processed, runner.stats.dead_lettered) == (2, 1, 0)


async def test_a_handler_that_always_fails_transiently_is_dead_lettered_after_the_retry_limit(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group = infra.unique("g")
    attempts = 0

    async def failing(event: OrderCreated, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await add_effect(uow, group, event)
        raise TransientError("the ledger is locked")

    event = new_order()
    await kafka.publish(event)
    next_event = new_order(event.order_id)
    await kafka.publish(next_event)
    async with running(
        settings_for(kafka.bootstrap, kafka.topics, retry_attempts=4),
        engine,
        [Subscription(OrderCreated, failing)],
        group=group,
        topics=kafka.topics,
    ):
        dead = await read_all(
            kafka.bootstrap, Topics.dlq(kafka.topics.for_event(OrderCreated)), expected=2
        )

    first = dict(dead[0].headers)
    assert dead[0].value == event.to_json()
    assert first["dlq.attempts"] == b"4"
    assert first["dlq.error.type"] == b"TransientError"
    assert first["dlq.error.message"] == b"the ledger is locked"
    assert first["event_id"] == str(event.event_id).encode()
    # Once together in one transaction (shared.consuming.pipeline), then four times each on
    # their own.
    assert attempts == 1 + 2 * 4
    assert await effects_of(engine, group) == {}


async def test_a_permanent_error_is_dead_lettered_at_once_after_one_attempt(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group = infra.unique("g")
    attempts = 0

    async def refusing(event: OrderCreated, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        raise PermanentError("this customer cannot exist")

    event = new_order()
    await kafka.publish(event)
    async with running(
        settings_for(kafka.bootstrap, kafka.topics),
        engine,
        [Subscription(OrderCreated, refusing)],
        group=group,
        topics=kafka.topics,
    ) as runner:
        dead = await read_all(
            kafka.bootstrap, Topics.dlq(kafka.topics.for_event(OrderCreated)), expected=1
        )

    assert dict(dead[0].headers)["dlq.attempts"] == b"1"
    assert dict(dead[0].headers)["dlq.error.type"] == b"PermanentError"
    assert attempts == 1
    assert runner.stats.retried == 0


async def test_a_database_outage_is_waited_out_rather_than_dead_lettered(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group = infra.unique("g")
    attempts = 0

    async def during_an_outage(event: OrderCreated, uow: UnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise ConnectionRefusedError("connection to PostgreSQL refused")
        await add_effect(uow, group, event)

    event = new_order()
    await kafka.publish(event)
    async with running(
        settings_for(kafka.bootstrap, kafka.topics, retry_attempts=1),
        engine,
        [Subscription(OrderCreated, during_an_outage)],
        group=group,
        topics=kafka.topics,
    ) as runner:
        await wait_until(lambda: _has_effect(engine, group, event.event_id), what="the effect")

    assert attempts == 4
    assert runner.stats.dead_lettered == 0
    assert await effects_of(engine, group) == {event.event_id: 1}


@pytest.mark.parametrize("redis_state", ["redis up", "redis unreachable"])
async def test_the_same_event_delivered_twice_has_one_effect(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka, redis_state: str
) -> None:
    group = infra.unique("g")
    redis_url = (
        infra.redis_url if redis_state == "redis up" else f"redis://127.0.0.1:{closed_port()}"
    )
    redis = Redis.from_url(redis_url)
    dedup = Deduplicator(redis, ttl_seconds=600, prefix=infra.unique("seen"))
    event = new_order()
    sentinel = new_order(event.order_id)  # same key, so it is processed after both copies
    for each in (event, event, sentinel):
        await kafka.publish(each)

    async with running(
        settings_for(kafka.bootstrap, kafka.topics),
        engine,
        [Subscription(OrderCreated, effect_handler(group))],
        group=group,
        topics=kafka.topics,
        dedup=dedup,
    ) as runner:
        await wait_until(lambda: _has_effect(engine, group, sentinel.event_id), what="sentinel")
    await redis.aclose()

    assert await effects_of(engine, group) == {event.event_id: 1, sentinel.event_id: 1}
    assert (runner.stats.processed, runner.stats.duplicates) == (2, 1)


async def test_several_handlers_of_one_event_type_run_in_one_unit_of_work(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    first, second = infra.unique("first"), infra.unique("second")
    calls = 0

    async def second_fails_once(event: OrderCreated, uow: UnitOfWork) -> None:
        nonlocal calls
        calls += 1
        await add_effect(uow, second, event)
        if calls == 1:
            raise TransientError("once")

    event = new_order()
    await kafka.publish(event)
    async with running(
        settings_for(kafka.bootstrap, kafka.topics),
        engine,
        [
            Subscription(OrderCreated, effect_handler(first)),
            Subscription(OrderCreated, second_fails_once),
        ],
        group=infra.unique("g"),
        topics=kafka.topics,
    ):
        await wait_until(lambda: _has_effect(engine, second, event.event_id), what="effects")

    # The first handler's effect of the failed attempt was rolled back with the second's.
    assert await effects_of(engine, first) == {event.event_id: 1}
    assert await effects_of(engine, second) == {event.event_id: 1}


async def _has_effect(engine: AsyncEngine, label: str, event_id: uuid.UUID) -> bool:
    return event_id in await effects_of(engine, label)


# What a handler asks of the database with an order's total: a numeric(4,2) holds less than
# 100 (22003 numeric field overflow), and an index entry holds at most a few kilobytes
# (54000 program limit exceeded: the value is too long for the unique index).
DATA_ERRORS = {
    "22003": "SELECT CAST(CAST(:total AS numeric) AS numeric(4, 2))",
    "54000": "INSERT INTO consumer_notes (note) "
    "SELECT string_agg(md5(:total || n), '') FROM generate_series(1, 400) AS n",
}


@pytest.mark.parametrize("sqlstate", sorted(DATA_ERRORS))
async def test_data_the_database_refuses_is_dead_lettered_with_its_sqlstate_and_the_rest_goes_on(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka, sqlstate: str
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE IF NOT EXISTS consumer_notes (note text PRIMARY KEY)")
        )
    group = infra.unique("g")
    attempts: list[uuid.UUID] = []

    async def store_total(event: OrderCreated, uow: UnitOfWork) -> None:
        attempts.append(event.event_id)
        if event.total > 100:  # only the refused record asks the database
            await uow.session.execute(text(DATA_ERRORS[sqlstate]), {"total": str(event.total)})
        await add_effect(uow, group, event)

    refused = new_order().model_copy(update={"total": Decimal("123456.00")})
    after = new_order(refused.order_id)  # the same key: next in the same partition
    for each in (refused, after):
        await kafka.publish(each)
    async with running(
        settings_for(kafka.bootstrap, kafka.topics, retry_attempts=5),
        engine,
        [Subscription(OrderCreated, store_total)],
        group=group,
        topics=kafka.topics,
    ) as runner:
        (dead,) = await read_all(
            kafka.bootstrap, Topics.dlq(kafka.topics.for_event(OrderCreated)), expected=1
        )
        await wait_until(lambda: _has_effect(engine, group, after.event_id), what="the next one")

    headers = dict(dead.headers)
    assert dead.value == refused.to_json()
    assert headers["dlq.error.message"].startswith(f"SQLSTATE {sqlstate}: ".encode())
    # Refused for good: once with its neighbour in the run, once alone, never retried.
    assert headers["dlq.attempts"] == b"1"
    assert attempts.count(refused.event_id) <= 2
    assert runner.stats.retried == 0 and runner.stats.dead_lettered == 1
    assert await effects_of(engine, group) == {after.event_id: 1}


async def test_an_idempotency_key_evicted_from_redis_costs_an_inbox_lookup_not_a_second_effect(
    infra: Infrastructure, engine: AsyncEngine, kafka: Kafka
) -> None:
    group = infra.unique("g")
    redis = Redis.from_url(infra.redis_url)
    dedup = Deduplicator(redis, ttl_seconds=600, prefix=infra.unique("seen"))
    event = new_order()
    subscriptions = [Subscription(OrderCreated, effect_handler(group))]
    settings = settings_for(kafka.bootstrap, kafka.topics)
    await kafka.publish(event)
    async with running(
        settings, engine, subscriptions, group=group, topics=kafka.topics, dedup=dedup
    ):
        await wait_until(lambda: _has_effect(engine, group, event.event_id), what="the effect")
        await wait_until(lambda: _known(redis, dedup.key(group, event.event_id)), what="the key")

    # Evicted (maxmemory, allkeys-lru) or expired (its TTL): Redis no longer knows the event.
    assert await redis.delete(dedup.key(group, event.event_id)) == 1
    sentinel = new_order(event.order_id)  # the same key: after the copy in its partition
    for each in (event, sentinel):  # a second copy, as a relay that published twice sends
        await kafka.publish(each)
    # A new assignment: the partition's first records are asked of Redis, which misses.
    async with running(
        settings, engine, subscriptions, group=group, topics=kafka.topics, dedup=dedup
    ) as again:
        await wait_until(lambda: _has_effect(engine, group, sentinel.event_id), what="sentinel")
    await redis.aclose()

    assert await effects_of(engine, group) == {event.event_id: 1, sentinel.event_id: 1}
    assert (again.stats.processed, again.stats.duplicates) == (1, 1)  # the inbox said so


async def _known(redis: Redis, key: str) -> bool:
    return bool(await redis.exists(key))


# Liveness: a runner whose poll loop has ended, or has not come back from a poll for longer
# than its bound, consumes nothing while the process still answers; ``check_polling`` (one of
# the checks of ``/readyz``) then fails, naming the group.


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
    async with running(
        settings_for(kafka.bootstrap, kafka.topics),
        engine,
        [Subscription(OrderCreated, effect_handler(group))],
        group=group,
        topics=kafka.topics,
        poll_stall_s=1.0,
    ) as runner:

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
