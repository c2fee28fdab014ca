"""One partition without a leader for a while: do the other partitions' events keep their
latency?

A three-broker cluster of the benchmark's own (ports 29110-29199, beside the bench profile's
single broker) holds one topic whose partitions have one replica each, placed by hand: the
first partition on broker 3, every other one on brokers 1 and 2. Killing broker 3 (SIGKILL)
leaves exactly that partition without a leader until the broker is started again.

Events are emitted at a steady rate, spread evenly over the partitions, each in its own
transaction of the platform's outbox (a database of the bench stack's PostgreSQL); the
platform's relay (``OutboxRelay.from_settings`` with the platform's producer) publishes them
and a consumer group reads them. An event's latency runs from its commit to its arrival at
the consumer: outbox, relay, broker, fetch. The run reports it per phase (before the kill,
while the partition has no leader, after the restart) for the healthy partitions, and for
the stalled partition checks that every one of its events arrived, once, after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from bench.stats import Summary, summarize
from deploy.localstack.cluster import KafkaCluster
from deploy.localstack.ports import free_ports_between
from deploy.localstack.postgres import create_database, database_url, drop_database
from services.events import CATALOGUE, OrderShipped
from shared.contracts.topics import Topics
from shared.publishing.outbox import OutboxRelay
from shared.publishing.producer import build_producer
from shared.settings import PlatformSettings
from shared.storage.db import UnitOfWorkFactory, create_platform_tables, make_engine

__all__ = ["StallResult", "run_stall"]

PORT_RANGE = (29110, 29199)
BROKERS = 3
STALLED_BROKER = 3
STALLED_PARTITION = 0
DATABASE = "sagakit_bench_stall"
GROUP = "bench-stall"
PHASES = ("before", "stalled", "after")
"""The phases reported; the first ``margin_s`` of events (phase ``warm-up``: the cluster, the
relay and the group still settling) are not."""


@dataclass(frozen=True)
class StallResult:
    partitions: int
    rate_per_s: float
    stalled_s: float
    healthy: dict[str, Summary | None]
    """Latency of the healthy partitions' events, by the phase they were emitted in."""
    stalled_partition: Summary | None
    """Latency of the events emitted to the stalled partition while it had no leader."""
    emitted: int
    arrived: int
    duplicates: int

    @property
    def slowdown(self) -> float | None:
        """p99 of the healthy partitions while one had no leader, over their p99 before."""
        before, during = self.healthy["before"], self.healthy["stalled"]
        return during.p99 / before.p99 if before and during and before.p99 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "rate_per_s": self.rate_per_s,
            "stalled_s": self.stalled_s,
            "healthy_latency": {
                phase: summary.to_json() if summary else None
                for phase, summary in self.healthy.items()
            },
            "stalled_partition_latency": (
                self.stalled_partition.to_json() if self.stalled_partition else None
            ),
            "healthy_p99_slowdown": round(self.slowdown, 3) if self.slowdown else None,
            "emitted": self.emitted,
            "arrived": self.arrived,
            "duplicates": self.duplicates,
        }


@dataclass
class _Emitted:
    partition: int
    phase: str
    committed: float


def keys_by_partition(partitions: int) -> list[str]:
    """One key per partition, in partition order (the default partitioner's choice)."""
    every = list(range(partitions))
    found: dict[int, str] = {}
    number = 0
    while len(found) < partitions:
        key = f"stall-{number}"
        found.setdefault(DefaultPartitioner()(key.encode(), every, every), key)
        number += 1
    return [found[p] for p in every]


def replica_placement(partitions: int) -> dict[int, list[int]]:
    """The stalled partition on the stalled broker, the others on brokers 1 and 2 in turn."""
    return {
        p: [STALLED_BROKER] if p == STALLED_PARTITION else [1 + p % 2] for p in range(partitions)
    }


async def run_stall(
    postgres_url: str,
    *,
    partitions: int,
    rate: float,
    margin_s: float,
    stall_s: float,
    drain_timeout_s: float,
) -> StallResult:
    folder = Path(tempfile.mkdtemp(prefix="sagakit-bench-stall-"))
    ports = free_ports_between(*PORT_RANGE, 2 * BROKERS)
    cluster = KafkaCluster(folder, list(zip(ports[::2], ports[1::2], strict=True)))
    try:
        await asyncio.to_thread(cluster.start)
        await drop_database(postgres_url, DATABASE)
        await create_database(postgres_url, DATABASE)
        try:
            return await _measure(
                cluster,
                database_url(postgres_url, DATABASE),
                partitions=partitions,
                rate=rate,
                margin_s=margin_s,
                stall_s=stall_s,
                drain_timeout_s=drain_timeout_s,
            )
        finally:
            await drop_database(postgres_url, DATABASE)
    finally:
        await asyncio.to_thread(cluster.stop)
        shutil.rmtree(folder, ignore_errors=True)


async def _measure(
    cluster: KafkaCluster,
    url: str,
    *,
    partitions: int,
    rate: float,
    margin_s: float,
    stall_s: float,
    drain_timeout_s: float,
) -> StallResult:
    settings = PlatformSettings(
        service_name="bench-stall",
        kafka_bootstrap=cluster.bootstrap,
        database_url=url,
        topic_prefix="bench-stall-",
    )
    topics = Topics(CATALOGUE, prefix=settings.topic_prefix)
    topic = topics.for_event(OrderShipped)
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        new = NewTopic(topic, -1, -1, replica_assignments=replica_placement(partitions))
        await admin.create_topics([new])
    finally:
        await admin.close()
    await cluster.wait_in_sync([topic])

    engine = make_engine(url)
    await create_platform_tables(engine)
    units = UnitOfWorkFactory(engine, topics)
    producer = build_producer(settings)
    await producer.start()
    relay = OutboxRelay.from_settings(settings, producer)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap,
        group_id=GROUP,
        auto_offset_reset="earliest",
    )
    keys = keys_by_partition(partitions)
    emitted: dict[str, _Emitted] = {}
    arrived: dict[str, float] = {}
    copies: Counter[str] = Counter()
    phase = "warm-up"
    emitting = True
    all_arrived = asyncio.Event()

    def check_all_arrived() -> None:
        if not emitting and len(emitted.keys() - arrived.keys()) == 0:
            all_arrived.set()

    async def emit() -> None:
        interval, due, index = 1 / rate, time.monotonic(), 0
        while emitting:
            partition = index % partitions
            event = OrderShipped.first(
                order_id=keys[partition], producer="bench", tracking_id="t", carrier="c"
            )
            async with units() as uow:
                uow.emit(event)
                await uow.commit()
            emitted[str(event.event_id)] = _Emitted(partition, phase, time.monotonic())
            index += 1
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def consume() -> None:
        async for record in consumer:
            event_id = dict(record.headers)["event_id"].decode()
            copies[event_id] += 1
            arrived.setdefault(event_id, time.monotonic())
            if not emitting and len(arrived) >= len(emitted):
                check_all_arrived()

    assigned = asyncio.Event()

    class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: object) -> None:
            pass

        async def on_partitions_assigned(self, partitions: object) -> None:
            assigned.set()

    consumer.subscribe([topic], listener=_Assigned())
    await consumer.start()
    await relay.start()
    tasks = [asyncio.create_task(consume())]
    try:
        # The group's join takes seconds: no event waits for it.
        await asyncio.wait_for(assigned.wait(), 60)
        tasks.append(asyncio.create_task(emit()))
        await asyncio.sleep(margin_s)
        phase = "before"
        await asyncio.sleep(margin_s)
        await asyncio.to_thread(cluster.kill, STALLED_BROKER)
        phase = "stalled"
        await asyncio.sleep(stall_s)
        await asyncio.to_thread(cluster.restart, STALLED_BROKER)
        phase = "after"
        await asyncio.sleep(margin_s)
        emitting = False
        await tasks.pop()
        check_all_arrived()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived.wait(), drain_timeout_s)
    finally:
        emitting = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay.stop()
        await consumer.stop()
        await producer.stop()
        await engine.dispose()

    def latencies(wanted: str, stalled: bool) -> list[float]:
        return [
            (arrived[event_id] - sent.committed) * 1000
            for event_id, sent in emitted.items()
            if sent.phase == wanted
            and (sent.partition == STALLED_PARTITION) == stalled
            and event_id in arrived
        ]

    return StallResult(
        partitions=partitions,
        rate_per_s=rate,
        stalled_s=stall_s,
        healthy={p: summarize(latencies(p, stalled=False)) for p in PHASES},
        stalled_partition=summarize(latencies("stalled", stalled=True)),
        emitted=len(emitted),
        arrived=len(set(emitted) & set(arrived)),
        duplicates=sum(n - 1 for n in copies.values()),
    )
