"""A partition whose leader is gone, on a real three-broker cluster: the relay goes on with the
other partitions, and dead letters to it get through once it is back.

Topics here have one replica (``replication.factor=1``): killing the broker that holds a
partition leaves that partition without a leader until the broker comes back, while the other
partitions, led by the other brokers, stay writable. The cluster is the tests' own
(tests/kafka_cluster.py); PostgreSQL comes from ``infra``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition
from sqlalchemy import select

from deploy.localstack.cluster import KafkaCluster
from services.events import CATALOGUE, OrderShipped
from shared.contracts.topics import Topics
from shared.publishing.dlq import DeadLetterQueue
from shared.publishing.outbox import OutboxRelay
from shared.publishing.producer import LINGER_MS
from shared.storage.db import UnitOfWorkFactory, create_platform_tables, make_engine, outbox_table
from tests.infra import Infrastructure
from tests.kafka_cluster import event_ids_in

PARTITIONS = 3
# Longer than any wait of these tests: a batch for the leaderless partition is never expired
# by the producer while the broker is down, so only the relay's own design decides whether
# the other partitions wait for it.
NEVER_S = 300.0
# How long a dead letter waits for a leader before the producer expires it.
DEAD_LETTER_EXPIRY_MS = 3000


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


def key_for(partition: int, label: str) -> str:
    """A key the default partitioner sends to ``partition``."""
    every = list(range(PARTITIONS))
    for number in range(10_000):
        key = f"{label}-{number}"
        if DefaultPartitioner()(key.encode(), every, every) == partition:
            return key
    raise AssertionError(f"no key for partition {partition}")


async def create_single_replica_topic(cluster: KafkaCluster, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(**cluster.client_options())
    await admin.start()
    try:
        configs = {"min.insync.replicas": "1"}
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    await cluster.wait_in_sync([name])


@pytest.fixture
async def patient_producer(cluster: KafkaCluster) -> AsyncIterator[AIOKafkaProducer]:
    """The platform's producer settings (acks=all, idempotent), batches never expired here."""
    producer = AIOKafkaProducer(
        **cluster.client_options(),
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        request_timeout_ms=int(NEVER_S * 1000),
    )
    await producer.start()
    yield producer
    await producer.stop()


async def test_a_partition_without_a_leader_delays_only_its_own_rows(
    cluster: KafkaCluster, infra: Infrastructure, patient_producer: AIOKafkaProducer
) -> None:
    topics = Topics(CATALOGUE, prefix=infra.topic_prefix("stalled-partition"))
    topic = topics.for_event(OrderShipped)
    await create_single_replica_topic(cluster, topic, PARTITIONS)
    leaders = {p.partition: p.leader for p in await cluster.partitions([topic])}
    # The partition whose broker leads no other partition of the topic goes down.
    stalled = next(p for p, node in leaders.items() if list(leaders.values()).count(node) == 1)
    down = leaders[stalled]
    healthy = [p for p in range(PARTITIONS) if p != stalled]
    url = await infra.create_database("stalled_partition")
    engine = make_engine(url)
    await create_platform_tables(engine)
    units = UnitOfWorkFactory(engine, topics)
    # Rounds of four rows: the stalled partition's backlog alone fills several rounds, and
    # the relay must look past it to find the other partitions' rows.
    relay = OutboxRelay(
        url,
        patient_producer,
        poll_interval_s=0.2,
        batch_size=4,
        ack_timeout_s=NEVER_S,
        name="stalled-partition",
    )
    stalled_key = key_for(stalled, "stalled")
    healthy_keys = [key_for(p, f"healthy-{p}") for p in healthy]
    emitted: dict[str, list[str]] = {}

    async def emit(key: str, count: int) -> None:
        for _ in range(count):
            event = OrderShipped.first(order_id=key, producer="test", tracking_id="t", carrier="c")
            async with units() as uow:
                uow.emit(event)
                await uow.commit()
            emitted.setdefault(key, []).append(str(event.event_id))

    async def unsent(keys: list[str]) -> int:
        async with engine.connect() as connection:
            query = select(outbox_table.c.id).where(
                outbox_table.c.sent_at.is_(None),
                outbox_table.c.key.in_([key.encode() for key in keys]),
            )
            return len((await connection.execute(query)).all())

    async def all_sent(keys: list[str]) -> bool:
        return await unsent(keys) == 0

    await relay.start()
    try:
        # Every partition written once first: the producer's sequence numbers are in play.
        for key in (stalled_key, *healthy_keys):
            await emit(key, 1)
        await eventually(lambda: all_sent([stalled_key, *healthy_keys]), 30, "first rows sent")

        await asyncio.to_thread(cluster.kill, down)
        await emit(stalled_key, 10)  # older than every healthy row below
        for key in healthy_keys:
            await emit(key, 5)

        await eventually(lambda: all_sent(healthy_keys), 60, "healthy partitions published")
        assert cluster.pid(down) is None  # published while the stalled partition was down
        assert await unsent([stalled_key]) == 10  # and none of its rows marked sent

        cluster.restart(down)
        await cluster.wait_in_sync([topic])
        await eventually(lambda: all_sent([stalled_key]), 90, "stalled partition published")
    finally:
        await relay.stop()
        await engine.dispose()

    # Every row once, each key's rows in the order they were emitted.
    in_topic = await event_ids_in(cluster, [topic])
    assert set(in_topic.values()) == {1}
    assert sorted(in_topic) == sorted(i for ids in emitted.values() for i in ids)
    assert await keys_in_order(cluster, topic) == emitted


async def keys_in_order(cluster: KafkaCluster, topic: str) -> dict[str, list[str]]:
    """Per key, the event ids of ``topic`` in log order, read to the end offsets of now."""
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(**cluster.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: dict[str, list[str]] = {}
        remaining = {tp for tp in partitions if ends[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining:
            assert time.monotonic() < deadline, f"{remaining} not read to their end"
            for records in (await consumer.getmany(*remaining, timeout_ms=1000)).values():
                for record in records:
                    assert record.key is not None
                    event_id = dict(record.headers)["event_id"].decode()
                    found.setdefault(record.key.decode(), []).append(event_id)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Failed:
    """A consumed record as the DLQ sees it."""

    topic: str
    key: bytes
    value: bytes
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


async def test_a_dead_letter_send_that_expired_does_not_block_later_dead_letters(
    cluster: KafkaCluster, infra: Infrastructure, caplog: pytest.LogCaptureFixture
) -> None:
    topic = infra.topic("expired-dead-letter")
    dead_letters = Topics.dlq(topic)
    await create_single_replica_topic(cluster, dead_letters, 1)
    [partition] = await cluster.partitions([dead_letters])
    producer = AIOKafkaProducer(
        **cluster.client_options(),
        acks="all",
        enable_idempotence=True,
        linger_ms=LINGER_MS,
        request_timeout_ms=DEAD_LETTER_EXPIRY_MS,
    )
    await producer.start()
    failures: list[float] = []

    async def counting_sleep(seconds: float) -> None:
        failures.append(seconds)
        await asyncio.sleep(seconds)

    dlq = DeadLetterQueue(
        producer, group="test", retry_base_ms=200, retry_max_ms=1000, sleep=counting_sleep
    )
    error = ValueError("handler gave up")
    try:
        await dlq.send(Failed(topic, b"k", b"before"), error, attempts=3)

        await asyncio.to_thread(cluster.kill, partition.leader)
        with caplog.at_level(logging.ERROR, logger="shared.publishing.dlq"):
            during = asyncio.create_task(dlq.send(Failed(topic, b"k", b"during"), error, 3))

            async def a_send_expired() -> bool:
                return "LeaderNotAvailableError" in caplog.text

            await eventually(a_send_expired, 60, "a dead letter expired without a leader")
        cluster.restart(partition.leader)
        await cluster.wait_in_sync([dead_letters])

        await asyncio.wait_for(during, 60)
        await asyncio.wait_for(dlq.send(Failed(topic, b"k", b"after"), error, 3), 60)
    finally:
        await producer.stop()

    assert failures  # the outage did fail sends
    consumer = AIOKafkaConsumer(
        dead_letters, **cluster.client_options(), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(values) < 3 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [record.value for record in records if record.value is not None]
    finally:
        await consumer.stop()
    assert values == [b"before", b"during", b"after"]
