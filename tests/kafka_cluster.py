"""A Kafka cluster of the tests' own, to kill brokers of: the shared test stack's stays whole.

``kafka_cluster`` starts three KRaft nodes (deploy/localstack/cluster.py, the code behind
``make up KAFKA_BROKERS=3``) on free ports of 39000-39499 for the session and stops them at
its end. The ``cluster`` fixture hands it to one test and, after it, starts again any node
the test left down and waits until every partition is fully in sync, so that one test's
failure does not become the next one's. PostgreSQL and Redis still come from ``infra``.

Registered in tests/conftest.py, so the integration and end-to-end tiers share one cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.localstack.cluster import JVM_OPTIONS, KafkaCluster, Scram
from deploy.localstack.ports import free_ports_between
from shared.settings import PlatformSettings

__all__ = ["cluster", "event_ids_in", "kafka_cluster", "scram_broker", "settings_for"]

PORT_RANGE = (39000, 39499)
BROKERS = 3
# The JIT's first tier only: three brokers start (and restart) beside the services on a
# 2-core machine, and a test's few thousand records never need the optimising compiler.
TEST_JVM_OPTIONS = (*JVM_OPTIONS, "-XX:TieredStopAtLevel=1")


def _on_free_ports(folder: Path, nodes: int, scram: Scram | None = None) -> KafkaCluster:
    ports = free_ports_between(*PORT_RANGE, 2 * nodes)
    node_ports = list(zip(ports[::2], ports[1::2], strict=True))
    return KafkaCluster(folder, node_ports, scram, jvm_options=TEST_JVM_OPTIONS)


@pytest.fixture(scope="session")
async def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KafkaCluster]:
    """Three brokers, a controller quorum of three, replication factor 3 and min ISR 2."""
    cluster = _on_free_ports(tmp_path_factory.mktemp("kafka-cluster"), BROKERS)
    # Worker threads: start() and stop() wait with asyncio.run, which must not meet the
    # session's loop.
    try:
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


@pytest.fixture
async def cluster(kafka_cluster: KafkaCluster) -> AsyncIterator[KafkaCluster]:
    """The session's cluster, every node back up and in sync after the test."""
    yield kafka_cluster
    for node in kafka_cluster.nodes:
        if kafka_cluster.pid(node.node_id) is None:
            kafka_cluster.restart(node.node_id)
    await kafka_cluster.wait_in_sync()


@pytest.fixture(scope="module")
async def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KafkaCluster]:
    """One broker that lets in only clients with its SCRAM-SHA-512 credentials."""
    folder = tmp_path_factory.mktemp("kafka-scram")
    broker = _on_free_ports(folder, 1, Scram.kept_in(folder))
    try:
        await asyncio.to_thread(broker.start)
        yield broker
    finally:
        await asyncio.to_thread(broker.stop)


def settings_for(cluster: KafkaCluster, **fields: Any) -> PlatformSettings:
    """Platform settings from the lines ``up`` writes to stack.env for ``cluster`` (its
    bootstrap list, replication factor and min ISR, credentials), plus ``fields``."""
    from_env = {key.removeprefix("SAGAKIT_").lower(): v for key, v in cluster.env().items()}
    return PlatformSettings.model_validate(from_env | fields)


async def event_ids_in(
    cluster: KafkaCluster, topics: Iterable[str], timeout: float = 60.0
) -> Counter[str]:
    """How often each ``event_id`` (record header) occurs in ``topics``, read from the
    beginning up to the end offsets of now, without a consumer group."""
    deadline = time.monotonic() + timeout
    partitions = [TopicPartition(p.topic, p.partition) for p in await cluster.partitions(topics)]
    consumer = AIOKafkaConsumer(**cluster.client_options(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: Counter[str] = Counter()
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            if time.monotonic() > deadline:
                raise AssertionError(f"{remaining} not read to their end within {timeout:.0f} s")
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    found[dict(record.headers)["event_id"].decode()] += 1
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()
