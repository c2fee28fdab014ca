"""The relay when Kafka fails part of a round: partitions stay in order, refusals are dead-lettered.

Real PostgreSQL, Kafka and aiokafka. A partition without a leader cannot be had on the
one-broker test cluster, so ``leaderless`` makes the producer's metadata say so: aiokafka
then does what it does for a real one, it keeps the partition's batches queued and expires
the first after ``request_timeout_ms``. The leader comes back as that batch fails, and
whatever is queued behind it goes out. Records too large for a topic are refused by the real
broker (topics with a small ``max.message.bytes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition
from sqlalchemy import select

from services.events import CATALOGUE, OrderShipped
from shared.contracts.topics import Topics
from shared.publishing.outbox import OutboxRelay
from shared.publishing.producer import LINGER_MS, build_producer
from shared.settings import PlatformSettings
from shared.storage.db import create_platform_tables, make_engine, outbox_table
from tests.infra import Infrastructure
from tests.integration.test_outbox import (
    Stack,
    _is_zero,
    eventually,
    read_back,
    sequences_by_key,
    shipped,
)

PARTITIONS = 3
SMALL_TOPIC_BYTES = 4000
"""``max.message.bytes`` of the topics that refuse large records (a batch is one message)."""
EXPIRY_MS = 1500
"""The test producer's ``request_timeout_ms``: how long a batch waits for a leader."""


@contextlib.contextmanager
def leaderless(producer: AIOKafkaProducer, partition: TopicPartition) -> Iterator[list[int]]:
    """``partition`` has no leader until its first batch expires; yields the expiries seen."""
    cluster = producer.client.cluster
    real = cluster.leader_for_partition
    expired: list[int] = []

    def leader_for_partition(tp: TopicPartition) -> Any:
        return None if tp == partition and not expired else real(tp)

    accumulator = producer._message_accumulator
    pop = accumulator._pop_batch

    def pop_batch(tp: TopicPartition) -> Any:
        batch = pop(tp)
        if tp == partition and not expired and batch.expired():
            expired.append(batch.record_count)
        return batch

    cluster.leader_for_partition = leader_for_partition
    accumulator._pop_batch = pop_batch
    try:
        yield expired
    finally:
        cluster.leader_for_partition = real
        accumulator._pop_batch = pop


@pytest.fixture
async def expiring_producer(infra: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    """The platform's producer (shared.publishing.producer), with a short ``request_timeout_ms``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        request_timeout_ms=EXPIRY_MS,
    )
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="module")
async def producer(infra: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    settings = PlatformSettings(kafka_bootstrap=infra.kafka_bootstrap, service_name="test-outbox")
    producer = build_producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def admin(infra: Infrastructure) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await client.start()
    yield client
    await client.close()


async def make_stack(
    infra: Infrastructure,
    admin: AIOKafkaAdminClient,
    producer: Any,
    *,
    topic_bytes: int | None = None,
    dead_letter_bytes: int | None = None,
) -> Stack:
    """A database with the platform's tables, and the OrderShipped topic and its DLQ."""
    url = await infra.create_database("outbox_failures")
    engine = make_engine(url)
    await create_platform_tables(engine)
    topics = Topics(CATALOGUE, prefix=infra.topic_prefix("outbox-failures"))
    topic = topics.for_event(OrderShipped)

    def config(limit: int | None) -> dict[str, str]:
        return {} if limit is None else {"max.message.bytes": str(limit)}

    await admin.create_topics(
        [
            NewTopic(topic, PARTITIONS, 1, topic_configs=config(topic_bytes)),
            NewTopic(Topics.dlq(topic), PARTITIONS, 1, topic_configs=config(dead_letter_bytes)),
        ]
    )
    return Stack(url, engine, topics, producer, infra.kafka_bootstrap)


def quick_relay(stack: Stack) -> OutboxRelay:
    return OutboxRelay(
        stack.url,
        stack.producer,
        poll_interval_s=0.1,
        ack_timeout_s=5,
        name=f"failures-{uuid.uuid4().hex[:6]}",
    )


def padded(order_id: str, sequence: int) -> OrderShipped:
    """An event of about 1 kB whose tracking id starts with its emission sequence."""
    return OrderShipped.first(
        order_id=order_id,
        producer="test",
        tracking_id=f"{sequence}-" + "x" * 900,
        carrier="test-carrier",
    )


def padded_sequences(records: list[Any]) -> dict[str, list[int]]:
    """Per key, the emission sequences of ``padded`` events, in the order read from Kafka."""
    by_key: dict[str, list[int]] = {}
    for record in records:
        tracking = OrderShipped.model_validate_json(record.value).tracking_id
        by_key.setdefault(record.key.decode(), []).append(int(tracking.split("-")[0]))
    return by_key


def partition_of(topic: str, key: str) -> TopicPartition:
    every = list(range(PARTITIONS))
    return TopicPartition(topic, DefaultPartitioner()(key.encode(), every, every))


async def outbox_rows(stack: Stack) -> list[Any]:
    async with stack.engine.connect() as connection:
        query = select(outbox_table).order_by(outbox_table.c.id)
        return list((await connection.execute(query)).all())


async def test_a_partition_whose_batch_expires_without_a_leader_keeps_its_rows_in_order(
    infra: Infrastructure, admin: AIOKafkaAdminClient, expiring_producer: AIOKafkaProducer
) -> None:
    stack = await make_stack(infra, admin, expiring_producer)
    topic = stack.topics.for_event(OrderShipped)
    relay = quick_relay(stack)
    emitted: dict[str, list[int]] = {"o-0": [0], "o-1": []}
    await relay.start()
    try:
        # The producer writes to the partition once first: from then on the broker expects
        # its records' sequence numbers to follow on.
        async with stack.units() as uow:
            uow.emit(padded("o-0", 0))
            await uow.commit()
        await eventually(lambda: _is_zero(stack.unsent()), timeout_s=20)
        with leaderless(expiring_producer, partition_of(topic, "o-0")) as expired:
            # About 1 kB each, 40 for the leaderless partition: more than one of aiokafka's
            # 16 kB batches. One transaction: the relay finds them all in one round.
            async with stack.units() as uow:
                for sequence in range(1, 61):
                    key = "o-0" if sequence % 3 else "o-1"
                    uow.emit(padded(key, sequence))
                    emitted[key].append(sequence)
                await uow.commit()
            records = await read_back(stack.bootstrap, topic, 61, timeout_s=30)
            await eventually(lambda: _is_zero(stack.unsent()), timeout_s=30)
    finally:
        await relay.stop()
        await stack.engine.dispose()

    assert len(expired) == 1  # the failure did happen
    assert relay.stats.failed_rounds >= 1
    assert padded_sequences(records) == emitted
    # Every row once: none refused as out of order after the expired batch, none twice.
    assert len(records) == 61


async def test_a_record_too_large_for_its_topic_is_dead_lettered_and_the_next_rows_go_on(
    infra: Infrastructure, admin: AIOKafkaAdminClient, producer: AIOKafkaProducer
) -> None:
    stack = await make_stack(infra, admin, producer, topic_bytes=SMALL_TOPIC_BYTES)
    topic = stack.topics.for_event(OrderShipped)
    too_large = OrderShipped.first(
        order_id="o-1", producer="test", tracking_id="1" * 10_000, carrier="test-carrier"
    )
    for event in (shipped("o-1", 0), too_large, shipped("o-1", 2), shipped("o-2", 3)):
        async with stack.units() as uow:
            uow.emit(event)
            await uow.commit()
    relay = quick_relay(stack)

    await relay.start()
    try:
        records = await read_back(stack.bootstrap, topic, 3, timeout_s=20)
        dead_letters = await read_back(stack.bootstrap, Topics.dlq(topic), 1, timeout_s=20)
        await eventually(lambda: _is_zero(stack.unsent()), timeout_s=20)
        rows = await outbox_rows(stack)
    finally:
        await relay.stop()
        await stack.engine.dispose()

    assert sequences_by_key(records) == {"o-1": [0, 2], "o-2": [3]}
    [letter] = dead_letters
    assert (letter.key, letter.value) == (b"o-1", too_large.to_json())
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["event_id"] == str(too_large.event_id)
    assert headers["dlq.original.topic"] == topic
    assert headers["dlq.original.partition"] == str(partition_of(topic, "o-1").partition)
    assert headers["dlq.original.offset"] == "-1"
    assert headers["dlq.error.type"] == "MessageSizeTooLargeError"
    assert headers["dlq.consumer.group"].startswith("outbox relay")
    refused = rows[1]
    assert refused.sent_at is not None
    assert refused.refusal.startswith("refused by Kafka: MessageSizeTooLargeError")
    assert refused.refusal.endswith(f"dead-lettered to {Topics.dlq(topic)}")
    assert [row.refusal for row in rows if row.id != refused.id] == [None, None, None]
    assert relay.stats.dead_lettered == 1


async def test_a_batch_too_large_for_its_topic_goes_out_one_row_at_a_time(
    infra: Infrastructure, admin: AIOKafkaAdminClient, producer: AIOKafkaProducer
) -> None:
    stack = await make_stack(infra, admin, producer, topic_bytes=SMALL_TOPIC_BYTES)
    topic = stack.topics.for_event(OrderShipped)
    # Each about 1 kB, together far more than the topic takes in one batch.
    events = [
        OrderShipped.first(
            order_id="o-1",
            producer="test",
            tracking_id=f"{n:04d}" + "x" * 900,
            carrier="test-carrier",
        )
        for n in range(12)
    ]
    async with stack.units() as uow:
        for event in events:
            uow.emit(event)
        await uow.commit()
    relay = quick_relay(stack)

    await relay.start()
    try:
        records = await read_back(stack.bootstrap, topic, 12, timeout_s=20)
        await eventually(lambda: _is_zero(stack.unsent()), timeout_s=20)
    finally:
        await relay.stop()
        await stack.engine.dispose()

    assert [record.value for record in records] == [event.to_json() for event in events]
    assert relay.stats.dead_lettered == 0


async def test_a_record_its_dead_letter_topic_refuses_too_stays_in_the_outbox_and_is_skipped(
    infra: Infrastructure, admin: AIOKafkaAdminClient, producer: AIOKafkaProducer
) -> None:
    stack = await make_stack(
        infra, admin, producer, topic_bytes=SMALL_TOPIC_BYTES, dead_letter_bytes=SMALL_TOPIC_BYTES
    )
    topic = stack.topics.for_event(OrderShipped)
    too_large = OrderShipped.first(
        order_id="o-1", producer="test", tracking_id="1" * 10_000, carrier="test-carrier"
    )
    for event in (too_large, shipped("o-1", 1)):
        async with stack.units() as uow:
            uow.emit(event)
            await uow.commit()
    relay = quick_relay(stack)

    await relay.start()
    try:
        records = await read_back(stack.bootstrap, topic, 1, timeout_s=20)
        await eventually(lambda: _refused(stack), timeout_s=20)
        rows = await outbox_rows(stack)
    finally:
        await relay.stop()
        await stack.engine.dispose()

    assert sequences_by_key(records) == {"o-1": [1]}
    kept = rows[0]
    assert kept.sent_at is None  # the only copy: never purged
    assert kept.value == too_large.to_json()
    assert f"{Topics.dlq(topic)} refused it too" in kept.refusal
    assert rows[1].sent_at is not None


async def _refused(stack: Stack) -> bool:
    rows = await outbox_rows(stack)
    return rows[0].refusal is not None and rows[1].sent_at is not None


async def test_a_round_stuck_in_a_call_that_never_returns_is_given_up_and_led_again(
    infra: Infrastructure, admin: AIOKafkaAdminClient, producer: AIOKafkaProducer
) -> None:
    # Seen once in the chaos smoke: the broker killed a second after an instance started,
    # and that instance's relay went silent for good, its rows never sent (no round ended,
    # no batch was overdue). A call into the producer that never returns stands for it here.
    stack = await make_stack(infra, admin, producer)
    topic = stack.topics.for_event(OrderShipped)
    async with stack.units() as uow:
        uow.emit(shipped("o-1", 0))
        await uow.commit()
    hung = asyncio.Event()
    partitions_for = producer.partitions_for

    async def once_never(topic_name: str) -> Any:
        if not hung.is_set():
            hung.set()
            await asyncio.Event().wait()  # never set
        return await partitions_for(topic_name)

    relay = OutboxRelay(
        stack.url, _Hanging(producer, once_never), poll_interval_s=0.1, ack_timeout_s=1
    )
    await relay.start()
    try:
        records = await read_back(stack.bootstrap, topic, 1, timeout_s=30)
        await eventually(lambda: _is_zero(stack.unsent()), timeout_s=30)
    finally:
        await relay.stop()
        await stack.engine.dispose()

    assert hung.is_set() and sequences_by_key(records) == {"o-1": [0]}
    assert relay.stats.leaderships == 2


class _Hanging:
    """``producer`` but for ``partitions_for``, which is ``partitions_for``."""

    def __init__(self, producer: AIOKafkaProducer, partitions_for: Any) -> None:
        self._producer = producer
        self.partitions_for = partitions_for

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)
