"""sagakit topics, produce and tail against a real Kafka broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.cli_support import Sagakit
from tests.infra import Infrastructure

EVENT = {
    "event_id": "6f0c1f0e-0000-4000-8000-000000000001",
    "event_type": "OrderCreated",
    "order_id": "order-a",
}


@pytest.fixture
def sagakit(infra: Infrastructure, tmp_path: Path) -> Sagakit:
    return Sagakit({"SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap}, tmp_path / "stack.env")


async def a_topic(sagakit: Sagakit, infra: Infrastructure, partitions: int = 3) -> str:
    topic = infra.topic("cli")
    created = await sagakit("topics", "create", topic, "--partitions", str(partitions))
    assert created.exit_code == 0, created.stderr
    return topic


async def topic_names(infra: Infrastructure) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_topic_is_created_listed_described_and_deleted(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic = await a_topic(sagakit, infra, partitions=3)

    again = await sagakit("topics", "create", topic, "--partitions", "3")
    listed = await sagakit("topics", "list", "--all", "--json")
    described = await sagakit("topics", "describe", topic, "--json")
    deleted = await sagakit("topics", "delete", topic, "--yes")
    gone = await sagakit("topics", "describe", topic)

    assert again.exit_code == 1
    assert again.error_lines == [f"sagakit: cannot create {topic}: Topic '{topic}' already exists."]
    assert {"topic": topic, "partitions": 3, "replication_factor": 1} in listed.json()
    found = described.json()
    assert [p["partition"] for p in found["partitions"]] == [0, 1, 2]
    assert (found["records"], found["configs"]["cleanup.policy"]) == (0, "delete")
    assert deleted.exit_code == 0 and deleted.stdout == f"deleted {topic}\n"
    assert gone.exit_code == 1
    assert len(gone.error_lines) == 1 and f"no topic {topic!r}" in gone.stderr


async def test_produce_then_tail_shows_key_partition_offset_headers_and_the_event(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic = await a_topic(sagakit, infra)

    one = await sagakit("produce", topic, "--key", "order-a", json.dumps(EVENT), "-H", "trace=x")
    two = await sagakit("produce", topic, "--key", "order-b", "--json", input="first\n\nsecond\n")
    shown = await sagakit("tail", topic, "--from-beginning", "--json")
    text = await sagakit("tail", topic, "--from-beginning", "--key", "order-a")

    assert one.exit_code == 0 and one.stdout.startswith(f"{topic}[")
    assert [(r["topic"], r["offset"]) for r in two.json()] == [(topic, 0), (topic, 1)]
    records = shown.json_lines()
    assert sorted(r["key"] for r in records) == ["order-a", "order-b", "order-b"]
    event = next(r for r in records if r["key"] == "order-a")
    assert event["value"] == EVENT and event["value_encoding"] == "json"
    # The event's own headers were added, as the services write them.
    assert event["headers"] == {
        "trace": "x",
        "event_type": "OrderCreated",
        "event_id": EVENT["event_id"],
    }
    assert event["timestamp"].endswith("Z") and isinstance(event["partition"], int)
    lines = [r for r in records if r["key"] == "order-b"]
    assert [(r["value"], r["value_encoding"], r["offset"]) for r in lines] == [
        ("first", "text", 0),
        ("second", "text", 1),
    ]
    assert text.exit_code == 0
    assert "key=order-a" in text.stdout and "key=order-b" not in text.stdout
    assert '    "event_type": "OrderCreated",' in text.stdout  # the event, indented


async def test_tail_shows_the_newest_records_unless_told_otherwise(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic = await a_topic(sagakit, infra, partitions=1)
    values = "".join(f"record {n}\n" for n in range(15))
    assert (await sagakit("produce", topic, "--key", "k", input=values)).exit_code == 0

    newest = await sagakit("tail", topic, "--json")
    three = await sagakit("tail", topic, "-n", "3", "--json")
    oldest = await sagakit("tail", topic, "--from-beginning", "--limit", "2", "--json")

    assert [r["offset"] for r in newest.json_lines()] == list(range(5, 15))
    assert [r["value"] for r in three.json_lines()] == ["record 12", "record 13", "record 14"]
    assert [r["offset"] for r in oldest.json_lines()] == [0, 1]


async def test_tail_with_a_group_goes_on_where_it_stopped(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic = await a_topic(sagakit, infra, partitions=1)
    group = infra.unique("tail-group")
    values = "".join(f"v{n}\n" for n in range(5))
    assert (await sagakit("produce", topic, "--key", "k", input=values)).exit_code == 0

    first = await sagakit("tail", topic, "--group", group, "--from-beginning", "-n", "3", "--json")
    lag = (await sagakit("groups", "describe", group, "--json")).json()
    rest = await sagakit("tail", topic, "--group", group, "--json")
    after = (await sagakit("groups", "describe", group, "--json")).json()

    assert [r["value"] for r in first.json_lines()] == ["v0", "v1", "v2"]
    assert (lag["partitions"][0]["committed"], lag["lag"]) == (3, 2)
    assert [r["value"] for r in rest.json_lines()] == ["v3", "v4"]
    assert after["lag"] == 0


async def test_tail_follow_shows_records_as_they_arrive(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic = await a_topic(sagakit, infra)
    assert (await sagakit("produce", topic, "--key", "k", "before")).exit_code == 0

    following = await sagakit.started(
        "tail", topic, "--from-beginning", "--follow", "--limit", "2", "--json"
    )
    try:
        assert following.stdout is not None
        # It has shown the backlog: only now is the next record one that arrives later.
        first = await asyncio.wait_for(following.stdout.readline(), 60)
        assert json.loads(first)["value"] == "before"
        assert following.returncode is None  # still following
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"after", key=b"k")
        finally:
            await producer.stop()
        second = await asyncio.wait_for(following.stdout.readline(), 60)
        assert await asyncio.wait_for(following.wait(), 60) == 0
    finally:
        if following.returncode is None:
            following.kill()
            await following.wait()

    assert json.loads(second)["value"] == "after"


async def test_producing_to_a_missing_topic_is_refused_and_creates_nothing(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    missing = infra.topic("missing")

    refused = await sagakit("produce", missing, "--key", "k", "value")
    tailed = await sagakit("tail", missing)

    for ran in (refused, tailed):
        assert ran.exit_code == 1
        assert ran.error_lines == [
            f"sagakit: no topic {missing!r} on Kafka at {infra.kafka_bootstrap}; "
            "sagakit topics list shows them"
        ]
    assert missing not in await topic_names(infra)


async def test_a_header_without_a_value_is_a_usage_error(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic = await a_topic(sagakit, infra)

    wrong = await sagakit("produce", topic, "--key", "k", "v", "--header", "novalue")

    assert wrong.exit_code == 2
    assert wrong.error_lines == [
        "sagakit: Invalid value for --header: 'novalue': write NAME=VALUE "
        "(see: sagakit produce --help)"
    ]


async def configs_once(
    sagakit: Sagakit, topic: str, shown: Callable[[dict[str, str]], bool]
) -> dict[str, str]:
    """``topics describe``'s configs of ``topic`` once ``shown`` holds (at most 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        configs: dict[str, str] = (await sagakit("topics", "describe", topic, "--json")).json()[
            "configs"
        ]
        if shown(configs) or time.monotonic() > deadline:
            return configs
        await asyncio.sleep(0.2)


async def test_alter_config_sets_and_deletes_a_topics_settings_keeping_the_others(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic = await a_topic(sagakit, infra, partitions=1)

    first = await sagakit(
        "topics", "alter-config", topic, "--set", "retention.ms=3600000",
        "--set", "max.message.bytes=2000000",
    )  # fmt: skip
    second = await sagakit("topics", "alter-config", topic, "--delete", "max.message.bytes")
    # A broker applies an altered config through its metadata log: a describe right after
    # may still show the one before (seen on a loaded machine), so wait for the deletion.
    configs = await configs_once(sagakit, topic, lambda c: "max.message.bytes" not in c)
    unknown = await sagakit("topics", "alter-config", topic, "--delete", "segment.ms")
    invalid = await sagakit("topics", "alter-config", topic, "--set", "retention.ms=soon")
    nothing = await sagakit("topics", "alter-config", topic)
    kept = (await sagakit("topics", "describe", topic, "--json")).json()["configs"]

    assert first.exit_code == 0, first.stderr
    assert "retention.ms" in first.stdout and "3600000" in first.stdout
    assert second.exit_code == 0, second.stderr
    assert configs["retention.ms"] == "3600000"  # kept while another one was deleted
    assert "max.message.bytes" not in configs
    assert unknown.exit_code == 1
    assert unknown.error_lines == [
        f"sagakit: segment.ms is not set on {topic} (only its own settings can be deleted)"
    ]
    assert invalid.exit_code == 1 and len(invalid.error_lines) == 1
    assert f"cannot alter {topic}" in invalid.stderr
    assert nothing.exit_code == 2 and "give --set KEY=VALUE or --delete KEY" in nothing.stderr
    assert kept == configs
