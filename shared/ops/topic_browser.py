"""The topics as an operator browses them: their partitions and configuration, the brokers,
and the messages of a partition from an offset, from a time, or with a key.

What ``sagakit topics`` prints and the explorer's topic pages show, read the same way. Every
read is bounded: topics come a page at a time after a name (``after``), messages a page at a
time from an offset, and a search by key looks at most ``scan_limit`` records of the one
partition the key hashes to (the default partitioner's murmur2, as every producer here uses),
newest first, so no read grows with the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.ops.log_dirs import replica_sizes

__all__ = [
    "KEY_CONFIGS",
    "Broker",
    "Message",
    "PartitionState",
    "TopicState",
    "TopicSummary",
    "brokers",
    "describe_topic",
    "list_topics",
    "partition_for_key",
    "read_messages",
    "record_counts",
    "search_key",
    "topic_sizes",
]

KEY_CONFIGS: Final = frozenset({"cleanup.policy", "retention.ms", "min.insync.replicas"})
"""Shown whatever their source: what an operator of this system asks about first."""
_TOPIC_CONFIG_SOURCE: Final = 1
"""DescribeConfigs' config_source of a setting made on the topic itself."""
MAX_PAGE: Final = 500
"""The most topics or messages one page holds."""
DEFAULT_SCAN_LIMIT: Final = 10_000
FETCH_WAIT_MS: Final = 50
"""How long the broker holds a fetch with nothing new. A reader's first fetch starts at the
partition's end, before it seeks, and the read waits for that fetch to come back: the default
(500 ms) was half of every page's second."""


@dataclass(frozen=True, slots=True)
class PartitionState:
    partition: int
    leader: int
    """The leader's broker id; -1 when the partition has none (offline)."""
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    first_offset: int
    end_offset: int
    size_bytes: int | None = None
    """The leader replica's bytes on disk; None when its broker did not say."""

    @property
    def records(self) -> int:
        return self.end_offset - self.first_offset

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    @property
    def offline(self) -> bool:
        return self.leader < 0


@dataclass(frozen=True, slots=True)
class TopicState:
    name: str
    partitions: tuple[PartitionState, ...]
    configs: Mapping[str, str]
    """``KEY_CONFIGS`` and every setting made on the topic itself."""

    @property
    def records(self) -> int:
        return sum(partition.records for partition in self.partitions)

    @property
    def size_bytes(self) -> int | None:
        """The leaders' bytes on disk over its partitions; None when one is unknown."""
        sizes = [partition.size_bytes for partition in self.partitions]
        return None if None in sizes else sum(size for size in sizes if size is not None)


@dataclass(frozen=True, slots=True)
class TopicSummary:
    name: str
    partitions: int
    replication_factor: int
    under_replicated: int
    offline: int


@dataclass(frozen=True, slots=True)
class Broker:
    node_id: int
    host: str
    port: int
    rack: str | None
    controller: bool
    leaders: int
    """Partitions this broker leads."""
    replicas: int
    """Partition replicas it holds."""
    out_of_sync: int
    """Replicas it holds that are not in their partition's in-sync set: a broker behind, or
    down (a broker that is down drops out of the cluster's metadata altogether)."""


@dataclass(frozen=True, slots=True)
class Message:
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


async def list_topics(
    client_options: Mapping[str, Any],
    *,
    prefix: str = "",
    after: str = "",
    limit: int = 100,
    include_internal: bool = False,
) -> list[TopicSummary]:
    """Topics named ``prefix``..., in name order, the ``limit`` after ``after``."""
    async with _admin(client_options) as admin:
        described = await admin.describe_topics()  # no names: nothing gets auto-created
    summaries = [
        _summary(topic)
        for topic in described
        if (include_internal or not topic["is_internal"])
        and topic["topic"].startswith(prefix)
        and topic["topic"] > after
    ]
    return sorted(summaries, key=lambda summary: summary.name)[: _page(limit)]


async def record_counts(
    client_options: Mapping[str, Any], topics: Sequence[TopicSummary]
) -> dict[str, int]:
    """How many records each of ``topics`` holds (end minus first offset of each partition):
    two offset requests for the page, however long the topics are."""
    tps = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
    if not tps:
        return {}
    async with _reader(client_options) as reader:
        # Assigned first, their metadata comes in one request: looked up one topic at a
        # time, each unknown topic cost a metadata round (0.1 s) before its offsets.
        reader.assign(tps)
        firsts = await reader.beginning_offsets(tps)
        ends = await reader.end_offsets(tps)
    counts = dict.fromkeys((t.name for t in topics), 0)
    for tp in tps:
        counts[tp.topic] += ends[tp] - firsts[tp]
    return counts


async def topic_sizes(
    client_options: Mapping[str, Any], topics: Sequence[TopicSummary]
) -> dict[str, int]:
    """The bytes each of ``topics`` takes on disk, its leader replicas': one DescribeLogDirs
    per broker for the page; a topic with a replica unaccounted for is left out."""
    if not topics:
        return {}
    async with _admin(client_options) as admin:
        cluster = await admin.describe_cluster()
        brokers = [node["node_id"] for node in cluster["brokers"]]
        described = await admin.describe_topics()
        sizes = await replica_sizes(
            admin, brokers, {t.name: list(range(t.partitions)) for t in topics}
        )
    wanted = {t.name for t in topics}
    totals: dict[str, int] = {}
    for topic in described:
        if topic["topic"] not in wanted:
            continue
        leaders = [
            sizes.get((topic["topic"], p["partition"], p["leader"])) for p in topic["partitions"]
        ]
        if None not in leaders:
            totals[topic["topic"]] = sum(size for size in leaders if size is not None)
    return totals


async def describe_topic(client_options: Mapping[str, Any], topic: str) -> TopicState | None:
    """A topic's partitions (leaders, replicas, offsets, sizes) and configuration; None if
    absent."""
    async with _admin(client_options) as admin:
        described = await admin.describe_topics()
        found = next((t for t in described if t["topic"] == topic), None)
        if found is None:
            return None
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        numbers = [p["partition"] for p in found["partitions"]]
        leaders = sorted({p["leader"] for p in found["partitions"] if p["leader"] >= 0})
        sizes = await replica_sizes(admin, leaders, {topic: numbers})
    tps = [TopicPartition(topic, p["partition"]) for p in found["partitions"]]
    async with _reader(client_options) as reader:
        reader.assign(tps)  # (see record_counts)
        firsts = await reader.beginning_offsets(tps)
        ends = await reader.end_offsets(tps)
    entries = response.to_object()["resources"][0]["config_entries"]
    configs = {
        entry["config_names"]: entry["config_value"]
        for entry in entries
        if entry["config_names"] in KEY_CONFIGS or entry["config_source"] == _TOPIC_CONFIG_SOURCE
    }
    partitions = tuple(
        PartitionState(
            partition=p["partition"],
            leader=p["leader"],
            replicas=tuple(p["replicas"]),
            isr=tuple(p["isr"]),
            first_offset=firsts[TopicPartition(topic, p["partition"])],
            end_offset=ends[TopicPartition(topic, p["partition"])],
            size_bytes=sizes.get((topic, p["partition"], p["leader"])),
        )
        for p in sorted(found["partitions"], key=lambda p: p["partition"])
    )
    return TopicState(topic, partitions, dict(sorted(configs.items())))


async def brokers(client_options: Mapping[str, Any]) -> list[Broker]:
    """The brokers the cluster's metadata names, with what each leads and holds."""
    async with _admin(client_options) as admin:
        cluster = await admin.describe_cluster()
        described = await admin.describe_topics()
    leaders: dict[int, int] = {}
    replicas: dict[int, int] = {}
    behind: dict[int, int] = {}
    for topic in described:
        for partition in topic["partitions"]:
            leaders[partition["leader"]] = leaders.get(partition["leader"], 0) + 1
            for node in partition["replicas"]:
                replicas[node] = replicas.get(node, 0) + 1
                if node not in partition["isr"]:
                    behind[node] = behind.get(node, 0) + 1
    return [
        Broker(
            node_id=node["node_id"],
            host=node["host"],
            port=node["port"],
            rack=node.get("rack"),
            controller=node["node_id"] == cluster.get("controller_id"),
            leaders=leaders.get(node["node_id"], 0),
            replicas=replicas.get(node["node_id"], 0),
            out_of_sync=behind.get(node["node_id"], 0),
        )
        for node in sorted(cluster["brokers"], key=lambda node: node["node_id"])
    ]


async def read_messages(
    client_options: Mapping[str, Any],
    topic: str,
    partition: int,
    *,
    offset: int | None = None,
    at: datetime | None = None,
    limit: int = 50,
) -> list[Message]:
    """Up to ``limit`` messages of one partition, in offset order, from ``offset``, or from
    the first one at or after ``at``, or else the newest ``limit``."""
    tp = TopicPartition(topic, partition)
    limit = _page(limit)
    async with _reader(client_options) as reader:
        reader.assign([tp])
        first = (await reader.beginning_offsets([tp]))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        if offset is None and at is not None:
            found = (await reader.offsets_for_times({tp: int(at.timestamp() * 1000)}))[tp]
            offset = end if found is None else found.offset
        start = max(first, end - limit) if offset is None else max(first, offset)
        return [_message(r) for r in await _read(reader, tp, start, min(end, start + limit))]


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition the default partitioner (Java's and aiokafka's) gives ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


async def search_key(
    client_options: Mapping[str, Any],
    topic: str,
    key: bytes,
    *,
    limit: int = 50,
    scan_limit: int = DEFAULT_SCAN_LIMIT,
) -> tuple[int, list[Message], bool]:
    """The newest ``limit`` messages with ``key``, oldest first, looked for among the newest
    ``scan_limit`` records of the partition the key hashes to: (that partition, the messages,
    whether older records were left unread)."""
    async with _admin(client_options) as admin:
        described = await admin.describe_topics()  # all: naming one may auto-create it
    count = next((len(t["partitions"]) for t in described if t["topic"] == topic), 0)
    if count == 0:
        raise LookupError(f"no topic {topic!r}")
    partition = partition_for_key(key, count)
    tp = TopicPartition(topic, partition)
    async with _reader(client_options) as reader:
        reader.assign([tp])
        first = (await reader.beginning_offsets([tp]))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        start = max(first, end - scan_limit)
        found = [r for r in await _read(reader, tp, start, end) if r.key == key]
    return partition, [_message(r) for r in found[-_page(limit) :]], start > first


async def _read(
    reader: AIOKafkaConsumer, tp: TopicPartition, start: int, stop: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of ``tp`` from ``start`` up to ``stop`` (exclusive); a gap (compaction,
    an aborted transaction's markers) ends the read early rather than waiting for it."""
    if start >= stop:
        return []
    reader.seek(tp, start)
    records: list[ConsumerRecord[bytes, bytes]] = []
    while True:
        batch = await reader.getmany(tp, timeout_ms=1000, max_records=stop - start)
        fetched = batch.get(tp, [])
        records.extend(r for r in fetched if r.offset < stop)
        position = await reader.position(tp)
        if not fetched or position >= stop:
            return records


def _summary(topic: Mapping[str, Any]) -> TopicSummary:
    partitions: Sequence[Mapping[str, Any]] = topic["partitions"]
    return TopicSummary(
        name=topic["topic"],
        partitions=len(partitions),
        replication_factor=max((len(p["replicas"]) for p in partitions), default=0),
        under_replicated=sum(1 for p in partitions if len(p["isr"]) < len(p["replicas"])),
        offline=sum(1 for p in partitions if p["leader"] < 0),
    )


def _message(record: ConsumerRecord[bytes, bytes]) -> Message:
    return Message(
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


def _page(limit: int) -> int:
    if limit < 1:
        raise ValueError("a page holds at least one item")
    return min(limit, MAX_PAGE)


@contextlib.asynccontextmanager
async def _admin(client_options: Mapping[str, Any]) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def _reader(client_options: Mapping[str, Any]) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer in no group that commits nothing: it only reads."""
    reader = AIOKafkaConsumer(
        **client_options, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=FETCH_WAIT_MS
    )
    await reader.start()
    try:
        await asyncio.sleep(0)  # see shared.ops.cli.kafka.consumer: a first step before stop
        yield reader
    finally:
        await reader.stop()
