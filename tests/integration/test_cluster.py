"""A three-broker cluster as ``make up KAFKA_BROKERS=3`` runs it: what it replicates, and what
producers and the outbox relay do when two of the three brokers are down.

The cluster is the tests' own (tests/kafka_cluster.py); PostgreSQL comes from ``infra``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import NotEnoughReplicasError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from deploy.localstack.cluster import KafkaCluster
from services.events import CATALOGUE, OrderShipped
from shared.contracts.topics import Topics, ensure_topics
from shared.publishing.outbox import OutboxRelay
from shared.publishing.producer import build_producer
from shared.settings import kafka_client_options
from shared.storage.db import UnitOfWorkFactory, create_platform_tables, make_engine, outbox_table
from tests.infra import Infrastructure
from tests.kafka_cluster import event_ids_in, settings_for

ACK_TIMEOUT_S = 3.0
# How long the relay is watched failing: longer than its acknowledgement timeout, while
# aiokafka retries the produce requests.
OUTAGE_WATCH_S = 8.0


async def configs_of(cluster: KafkaCluster, kind: ConfigResourceType, name: str) -> dict[str, str]:
    """The configuration of a broker or topic, as the cluster reports it."""
    admin = AIOKafkaAdminClient(**cluster.client_options())
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(kind, name)])
    finally:
        await admin.close()
    (entry,) = response.resources
    return {config[0]: config[1] for config in entry[4]}


async def test_stack_env_of_three_brokers_asks_for_three_replicas_and_two_in_sync(
    kafka_cluster: KafkaCluster,
) -> None:
    env = kafka_cluster.env()
    assert env["SAGAKIT_KAFKA_BOOTSTRAP"].count(",") == 2
    assert env["SAGAKIT_TOPIC_REPLICATION_FACTOR"] == "3"
    assert env["SAGAKIT_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    settings = settings_for(kafka_cluster)
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)


async def test_topics_and_internal_topics_get_three_replicas_and_need_two_in_sync(
    cluster: KafkaCluster, infra: Infrastructure
) -> None:
    settings = settings_for(cluster)
    topic = Topics(CATALOGUE, prefix=infra.topic_prefix("replicas")).for_event(OrderShipped)
    await ensure_topics(
        kafka_client_options(settings),
        [topic],
        partitions=6,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
    )
    # A group that commits an offset makes the broker create __consumer_offsets.
    consumer = AIOKafkaConsumer(
        topic, **cluster.client_options(), group_id=infra.unique("group"), enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)
        await consumer.commit()
    finally:
        await consumer.stop()

    partitions = await cluster.wait_in_sync([topic, "__consumer_offsets"])

    by_topic = {p.topic for p in partitions}
    assert by_topic == {topic, "__consumer_offsets"}
    assert all(len(p.replicas) == 3 for p in partitions), partitions
    assert {p.leader for p in partitions if p.topic == topic} == {1, 2, 3}  # leaders spread
    topic_configs = await configs_of(cluster, ConfigResourceType.TOPIC, topic)
    assert topic_configs["min.insync.replicas"] == "2"
    configs = await configs_of(cluster, ConfigResourceType.BROKER, "2")
    for name in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert configs[name] == "3", name
    assert configs["min.insync.replicas"] == configs["transaction.state.log.min.isr"] == "2"


@dataclass
class Outbox:
    """One test's outbox database and topic, with a relay publishing to the cluster."""

    engine: AsyncEngine
    units: UnitOfWorkFactory
    topic: str
    relay: OutboxRelay

    async def emit(self, count: int, label: str) -> None:
        for sequence in range(count):
            async with self.units() as uow:
                uow.emit(
                    OrderShipped.first(
                        order_id=f"{label}-{sequence % 4}",
                        producer="test",
                        tracking_id=label,
                        carrier="test-carrier",
                    )
                )
                await uow.commit()

    async def counts(self) -> tuple[int, int]:
        """(sent, unsent) rows."""
        async with self.engine.connect() as connection:
            sent = outbox_table.c.sent_at.is_not(None)
            query = select(func.count().filter(sent), func.count().filter(~sent))
            row = (await connection.execute(query)).one()
        return int(row[0]), int(row[1])

    async def sent_event_ids(self) -> list[str]:
        async with self.engine.connect() as connection:
            query = select(outbox_table.c.value).where(outbox_table.c.sent_at.is_not(None))
            values = (await connection.execute(query)).scalars().all()
        return [str(OrderShipped.model_validate_json(value).event_id) for value in values]


@pytest.fixture
async def outbox(cluster: KafkaCluster, infra: Infrastructure) -> AsyncIterator[Outbox]:
    settings = settings_for(cluster, service_name="cluster-outbox")
    url = await infra.create_database("cluster_outbox")
    engine = make_engine(url)
    await create_platform_tables(engine)
    topics = Topics(CATALOGUE, prefix=infra.topic_prefix("two-down"))
    topic = topics.for_event(OrderShipped)
    await ensure_topics(
        kafka_client_options(settings),
        [topic],
        partitions=3,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
    )
    await cluster.wait_in_sync([topic])
    producer = build_producer(settings)
    await producer.start()
    relay = OutboxRelay(
        url,
        producer,
        poll_interval_s=0.2,
        ack_timeout_s=ACK_TIMEOUT_S,
        standby_retry_s=0.2,
        name="cluster-outbox",
    )
    await relay.start()
    try:
        yield Outbox(engine, UnitOfWorkFactory(engine, topics), topic, relay)
    finally:
        await relay.stop()
        await producer.stop()
        await engine.dispose()


async def eventually_counts(outbox: Outbox, expected: tuple[int, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (counts := await outbox.counts()) != expected:
        assert time.monotonic() < deadline, f"(sent, unsent) {counts}, not {expected}"
        await asyncio.sleep(0.1)


async def test_with_two_of_three_brokers_down_producers_fail_with_not_enough_replicas_and_the_relay_marks_nothing_sent(  # noqa: E501
    cluster: KafkaCluster, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    await outbox.emit(5, "before")
    await eventually_counts(outbox, (5, 0), timeout=20)

    # A controlled shutdown (SIGTERM) of two brokers, one after the other: each leaves every
    # ISR while a quorum of controllers remains, so the last broker leads every partition
    # with an ISR of itself alone, one less than min.insync.replicas.
    for node_id in (2, 3):
        await asyncio.to_thread(cluster.stop_node, node_id)

    # A plain acks=all producer (no idempotence, so its retries expire) is refused loudly.
    plain = AIOKafkaProducer(**cluster.client_options(), acks="all", request_timeout_ms=3000)
    await plain.start()
    try:
        with pytest.raises(NotEnoughReplicasError):
            await plain.send_and_wait(outbox.topic, b"refused", key=b"refused")
    finally:
        await plain.stop()

    # The platform's producer (acks=all, idempotent; with acks=1 the one broker left would
    # take every write) keeps retrying the refused batches
    # (aiokafka never expires an idempotent batch) and says why in its log; the relay reports
    # the batches overdue after its acknowledgement timeout and marks nothing sent.
    with caplog.at_level(logging.WARNING, logger="aiokafka"):
        await outbox.emit(20, "during")
        watched_until = time.monotonic() + OUTAGE_WATCH_S
        while time.monotonic() < watched_until:
            assert await outbox.counts() == (5, 20)
            await asyncio.sleep(0.2)
    assert "NotEnoughReplicasError" in caplog.text
    assert outbox.relay.stats.failed_rounds >= 1

    for node_id in (2, 3):
        cluster.restart(node_id)
    await cluster.wait_in_sync([outbox.topic])
    await eventually_counts(outbox, (25, 0), timeout=60)

    # Every row marked sent is in the topic, and once: the retries wrote nothing twice.
    sent = await outbox.sent_event_ids()
    in_topic = await event_ids_in(cluster, [outbox.topic])
    assert sorted(in_topic) == sorted(sent)
    assert set(in_topic.values()) == {1}
