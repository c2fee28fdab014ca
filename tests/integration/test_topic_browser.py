"""The topic browser (shared.ops.topic_browser) against a real Kafka broker."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient

from shared.contracts.topics import ensure_topics
from shared.ops import topic_browser
from tests.infra import Infrastructure

pytestmark = pytest.mark.integration

KEYS = [b"order-1", b"order-2", b"order-3"]


def options(infra: Infrastructure) -> dict[str, Any]:
    return {"bootstrap_servers": infra.kafka_bootstrap}


async def produce(infra: Infrastructure, topic: str, count: int) -> dict[bytes, list[int]]:
    """``count`` records per key, keyed by ``KEYS`` in turn; where each key's went."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    placed: dict[bytes, list[int]] = {}
    try:
        for index in range(count):
            for key in KEYS:
                sent = await producer.send_and_wait(
                    topic, f"{key.decode()} #{index}".encode(), key=key, headers=[("n", b"1")]
                )
                placed.setdefault(key, []).append(sent.partition)
    finally:
        await producer.stop()
    return placed


@pytest.fixture
async def topic(infra: Infrastructure) -> str:
    name = infra.topic("browse")
    await ensure_topics(options(infra), [name], partitions=3)
    return name


async def test_a_topic_is_described_with_its_partitions_offsets_and_configs(
    infra: Infrastructure, topic: str
) -> None:
    await produce(infra, topic, 4)

    state = await topic_browser.describe_topic(options(infra), topic)

    assert state is not None
    assert [p.partition for p in state.partitions] == [0, 1, 2]
    assert state.records == 12
    assert all(p.leader >= 0 and not p.under_replicated for p in state.partitions)
    assert "retention.ms" in state.configs
    assert await topic_browser.describe_topic(options(infra), infra.topic("absent")) is None


async def test_topics_come_a_page_at_a_time_in_name_order(infra: Infrastructure) -> None:
    prefix = infra.topic_prefix("pages")
    names = [f"{prefix}{letter}" for letter in "abcde"]
    await ensure_topics(options(infra), names, partitions=1)

    first = await topic_browser.list_topics(options(infra), prefix=prefix, limit=2)
    rest = await topic_browser.list_topics(
        options(infra), prefix=prefix, after=first[-1].name, limit=10
    )

    assert [t.name for t in first + rest] == names
    assert all(t.partitions == 1 and t.offline == 0 for t in first + rest)


async def test_the_records_of_a_page_of_topics_are_counted(infra: Infrastructure) -> None:
    prefix = infra.topic_prefix("counted")
    full, empty = f"{prefix}full", f"{prefix}empty"
    await ensure_topics(options(infra), [full], partitions=3)
    await ensure_topics(options(infra), [empty], partitions=2)
    await produce(infra, full, 4)
    listed = await topic_browser.list_topics(options(infra), prefix=prefix)

    counts = await topic_browser.record_counts(options(infra), listed)

    assert counts == {full: 12, empty: 0}
    assert await topic_browser.record_counts(options(infra), []) == {}


async def test_the_records_of_many_topics_are_counted_in_one_metadata_round(
    infra: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each topic's offsets looked up on their own cost a metadata round each (0.1 s): a page
    # of 50 topics took 5 s. Twenty topics here: the rounds are counted, not timed.
    prefix = infra.topic_prefix("many")
    names = [f"{prefix}{n:02d}" for n in range(20)]
    await ensure_topics(options(infra), names, partitions=1)
    listed = await topic_browser.list_topics(options(infra), prefix=prefix)
    assert len(listed) == 20
    rounds: list[object] = []
    update = AIOKafkaClient._metadata_update

    async def counted(client: AIOKafkaClient, cluster: Any, topics: Any) -> Any:
        rounds.append(topics)
        return await update(client, cluster, topics)

    monkeypatch.setattr(AIOKafkaClient, "_metadata_update", counted)

    counts = await topic_browser.record_counts(options(infra), listed)

    assert counts == dict.fromkeys(names, 0)
    assert 1 <= len(rounds) <= 2, rounds


async def test_messages_are_read_from_an_offset_from_a_time_or_the_newest(
    infra: Infrastructure, topic: str
) -> None:
    placed = await produce(infra, topic, 5)
    partition = placed[b"order-1"][0]
    state = await topic_browser.describe_topic(options(infra), topic)
    assert state is not None
    end = state.partitions[partition].end_offset

    newest = await topic_browser.read_messages(options(infra), topic, partition, limit=2)
    from_two = await topic_browser.read_messages(
        options(infra), topic, partition, offset=2, limit=3
    )
    from_past = await topic_browser.read_messages(
        options(infra), topic, partition, at=datetime.now(UTC) - timedelta(hours=1), limit=1
    )
    from_future = await topic_browser.read_messages(
        options(infra), topic, partition, at=datetime.now(UTC) + timedelta(hours=1)
    )

    assert [m.offset for m in newest] == [end - 2, end - 1]
    assert [m.offset for m in from_two] == [2, 3, 4]
    assert [m.offset for m in from_past] == [0]
    assert from_future == []
    assert newest[0].headers == (("n", b"1"),)


async def test_a_page_of_messages_does_not_wait_for_the_fetch_at_the_end(
    infra: Infrastructure, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A reader's first fetch starts at the partition's end, before it seeks; the broker held
    # it 500 ms (its default wait for new records), and every page waited for it. Timed
    # against the same read by a reader that lets the broker hold that fetch its default
    # 500 ms (the defect), not against the clock: a loaded machine adds to both alike, and
    # the difference is the wait the reader does not have.
    await produce(infra, topic, 2)
    state = await topic_browser.describe_topic(options(infra), topic)  # connections warm
    assert state is not None

    async def page() -> tuple[list[int], float]:
        started = time.monotonic()
        read = await topic_browser.read_messages(options(infra), topic, 0, offset=0)
        return [m.offset for m in read], time.monotonic() - started

    offsets, took = await page()
    monkeypatch.setattr(topic_browser, "FETCH_WAIT_MS", 500)
    held_offsets, held = await page()

    assert offsets == held_offsets == list(range(state.partitions[0].end_offset))
    assert held >= 0.45, f"the held read took {held:.2f} s: the check proves nothing"
    assert held - took >= 0.3, f"{took:.2f} s, against {held:.2f} s held"


async def test_a_key_is_found_in_the_partition_it_hashes_to(
    infra: Infrastructure, topic: str
) -> None:
    placed = await produce(infra, topic, 3)

    partition, found, truncated = await topic_browser.search_key(options(infra), topic, b"order-2")

    assert {partition} == set(placed[b"order-2"])  # where the producer's partitioner put it
    assert [m.value for m in found] == [b"order-2 #0", b"order-2 #1", b"order-2 #2"]
    assert truncated is False
    _, newest, truncated = await topic_browser.search_key(
        options(infra), topic, b"order-2", limit=1, scan_limit=1
    )
    assert len(newest) <= 1
    assert truncated is True  # the partition holds more than the one record looked at


async def test_the_brokers_are_listed_with_what_they_lead(
    infra: Infrastructure, topic: str
) -> None:
    found = await topic_browser.brokers(options(infra))

    assert len(found) >= 1
    assert sum(broker.leaders for broker in found) >= 3  # this topic's three at least
    assert sum(1 for broker in found if broker.controller) <= 1


async def test_a_topic_and_its_partitions_have_their_size_on_disk(
    infra: Infrastructure, topic: str
) -> None:
    await produce(infra, topic, 20)

    state = await topic_browser.describe_topic(options(infra), topic)

    assert state is not None and state.size_bytes is not None
    # 60 records of 20-odd bytes each, plus their batches' headers: some kilobytes.
    assert 60 * 20 < state.size_bytes < 1_000_000
    assert all(p.size_bytes and p.size_bytes > 0 for p in state.partitions if p.records)
    listed = await topic_browser.list_topics(options(infra), prefix=topic)
    assert await topic_browser.topic_sizes(options(infra), listed) == {topic: state.size_bytes}
