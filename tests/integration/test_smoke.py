"""The real parts answer as the platform expects: partitions, keys, groups, SQL, Redis."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.infra import Infrastructure

PARTITIONS = 6
WAIT_S = 30.0  # every wait below is bounded by this


@pytest.fixture
async def topic(infra: Infrastructure) -> str:
    """A fresh topic with six partitions."""
    name = infra.topic("smoke")
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    return name


@pytest.fixture
async def producer(infra: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def consumer(infra: Infrastructure, topic: str, group_id: str | None = None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


async def read(infra: Infrastructure, topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` records of ``topic``, each partition's in offset order."""
    reader = consumer(infra, topic)
    await reader.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(WAIT_S):
            while len(records) < count:
                batches = await reader.getmany(timeout_ms=500)
                records += [record for batch in batches.values() for record in batch]
    finally:
        await reader.stop()
    return records


async def test_a_new_topic_has_the_six_partitions_it_was_created_with(
    topic: str, producer: AIOKafkaProducer
) -> None:
    async with asyncio.timeout(WAIT_S):
        assert await producer.partitions_for(topic) == set(range(PARTITIONS))


async def test_records_with_the_same_key_land_in_one_partition_and_read_back_in_order(
    infra: Infrastructure, topic: str, producer: AIOKafkaProducer
) -> None:
    keys = [f"order-{n}" for n in range(12)]
    per_key = 5
    for sequence in range(per_key):  # interleaved, as orders' events are
        for key in keys:
            await producer.send_and_wait(topic, key=key.encode(), value=str(sequence).encode())

    records = await read(infra, topic, count=len(keys) * per_key)

    partitions: dict[str, set[int]] = defaultdict(set)
    sequences: dict[str, list[int]] = defaultdict(list)
    for record in records:
        assert record.key is not None and record.value is not None
        partitions[record.key.decode()].add(record.partition)
        sequences[record.key.decode()].append(int(record.value))
    assert all(len(found) == 1 for found in partitions.values()), partitions
    assert all(seen == list(range(per_key)) for seen in sequences.values()), sequences
    assert len(set().union(*partitions.values())) > 1, "twelve keys should spread out"


async def test_two_consumers_in_one_group_split_the_six_partitions_between_them(
    infra: Infrastructure, topic: str
) -> None:
    group = infra.unique("group")
    first, second = consumer(infra, topic, group), consumer(infra, topic, group)
    await first.start()
    await second.start()
    try:
        async with asyncio.timeout(WAIT_S):
            while True:  # until the rebalance settles: disjoint halves that cover the topic
                await asyncio.gather(first.getmany(timeout_ms=200), second.getmany(timeout_ms=200))
                mine: set[TopicPartition] = first.assignment()
                theirs: set[TopicPartition] = second.assignment()
                if mine and theirs and not mine & theirs and len(mine | theirs) == PARTITIONS:
                    break
    finally:
        await first.stop()
        await second.stop()
    assert {tp.partition for tp in mine | theirs} == set(range(PARTITIONS))
    assert len(mine) == len(theirs) == PARTITIONS // 2


async def test_a_fresh_database_stores_a_row_and_returns_it(infra: Infrastructure) -> None:
    url = await infra.create_database("smoke")
    engine = create_async_engine(url)
    try:
        async with asyncio.timeout(WAIT_S), engine.begin() as connection:
            tables = await connection.scalar(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            )
            assert tables == 0, "a fresh database is empty"
            await connection.execute(text("CREATE TABLE greetings (id int PRIMARY KEY, word text)"))
            await connection.execute(text("INSERT INTO greetings VALUES (1, 'hello')"))
            word = await connection.scalar(text("SELECT word FROM greetings WHERE id = 1"))
        assert word == "hello"
    finally:
        await engine.dispose()


async def test_redis_stores_a_value_and_returns_it(infra: Infrastructure) -> None:
    key = infra.key_prefix("smoke") + "greeting"
    client = redis.asyncio.Redis.from_url(infra.redis_url)
    try:
        async with asyncio.timeout(WAIT_S):
            await client.set(key, "hello", ex=60)
            assert await client.get(key) == b"hello"
    finally:
        await client.aclose()
