"""sagakit groups: lag, members, and moving offsets, against a real Kafka broker.

A bare consumer group stands for a service: ``consume`` reads what is there and commits, as
a service does, and stops (the group is then empty); ``member`` keeps one consumer in the
group, as a running service does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.cli_support import Sagakit
from tests.infra import Infrastructure


@pytest.fixture
def sagakit(infra: Infrastructure, tmp_path: Path) -> Sagakit:
    return Sagakit({"SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap}, tmp_path / "stack.env")


async def a_topic(sagakit: Sagakit, infra: Infrastructure) -> str:
    topic = infra.topic("groups")
    assert (await sagakit("topics", "create", topic, "--partitions", "2")).exit_code == 0
    return topic


async def produce(infra: Infrastructure, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"v{n}".encode(), key=f"order-{n}".encode())
    finally:
        await producer.stop()


@asynccontextmanager
async def member(infra: Infrastructure, group: str, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer in ``group`` that has joined it and been given the topic's partitions."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group,
        client_id="lag-test-consumer",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=200)
        yield consumer
    finally:
        await consumer.stop()


async def consume(infra: Infrastructure, group: str, topic: str, expected: int) -> None:
    """Read ``expected`` records as the group, commit them and leave the group."""
    async with member(infra, group, topic) as consumer:
        seen = 0
        deadline = time.monotonic() + 30
        while seen < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            seen += sum(len(records) for records in batches.values())
        await consumer.commit()
    assert seen == expected


async def described(sagakit: Sagakit, group: str) -> dict[str, Any]:
    ran = await sagakit("groups", "describe", group, "--json")
    assert ran.exit_code == 0, ran.stderr
    found: dict[str, Any] = ran.json()
    return found


async def test_lag_rises_while_the_consumer_is_stopped_and_falls_to_zero_after_it_restarts(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("lag")
    await produce(infra, topic, 6)
    await consume(infra, group, topic, expected=6)
    caught_up = await described(sagakit, group)

    await produce(infra, topic, 4)  # while no consumer of the group runs
    behind = await described(sagakit, group)
    async with member(infra, group, topic) as running:
        while_running = await described(sagakit, group)
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 4 and time.monotonic() < deadline:
            seen += sum(map(len, (await running.getmany(timeout_ms=200)).values()))
        await running.commit()
        after_restart = await described(sagakit, group)

    assert (caught_up["state"], caught_up["lag"]) == ("Empty", 0)
    assert (behind["state"], behind["lag"]) == ("Empty", 4)
    assert sum(p["end"] for p in behind["partitions"]) == 10
    assert while_running["state"] == "Stable"
    (one,) = while_running["members"]
    assert one["client_id"] == "lag-test-consumer"
    assert sorted(one["partitions"]) == [f"{topic}[0]", f"{topic}[1]"]
    owners = {p["owner"] for p in while_running["partitions"]}
    assert owners == {one["member_id"]}
    assert after_restart["lag"] == 0


async def test_the_human_view_shows_the_total_lag_and_each_partition(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("view")
    await produce(infra, topic, 3)
    await consume(infra, group, topic, expected=3)
    await produce(infra, topic, 2)

    shown = await sagakit("groups", "describe", group)
    listed = await sagakit("groups", "list", "--all", "--json")

    assert shown.stdout.splitlines()[0] == f"group {group}: Empty, 0 member(s), total lag 2"
    assert shown.stdout.count(topic) == 2  # one row per partition
    assert {"group": group, "state": "Empty", "members": 0} in listed.json()


async def test_reset_offsets_without_execute_changes_nothing(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("dry")
    await produce(infra, topic, 6)
    await consume(infra, group, topic, expected=6)

    dry = await sagakit("groups", "reset-offsets", group, "--topic", topic, "--to-earliest")
    plan = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--json"
    )

    assert dry.exit_code == 0 and "dry run: nothing changed" in dry.stdout
    rows = plan.json()["partitions"]
    assert plan.json()["executed"] is False
    assert [r["new"] for r in rows] == [0, 0] and sum(r["old"] for r in rows) == 6
    assert (await described(sagakit, group))["lag"] == 0


async def test_reset_offsets_with_execute_moves_a_stopped_groups_offsets(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("moved")
    await produce(infra, topic, 6)
    # Kafka's timestamps are in milliseconds: the sixth record may share its millisecond
    # with a moment taken right after it, and a reset to that moment then includes it.
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await produce(infra, topic, 4)
    await consume(infra, group, topic, expected=10)

    async def reset(*how: str) -> dict[str, Any]:
        ran = await sagakit("groups", "reset-offsets", group, "--topic", topic, *how, "--execute")
        assert ran.exit_code == 0, ran.stderr
        return await described(sagakit, group)

    earliest = await reset("--to-earliest")
    latest = await reset("--to-latest")
    by_time = await reset("--to-datetime", between.isoformat())
    one = await reset("--to-offset", "1", "--partition", "0")

    assert earliest["lag"] == 10
    assert latest["lag"] == 0
    assert by_time["lag"] == 4  # the records written after ``between``
    committed = {p["partition"]: p["committed"] for p in one["partitions"]}
    ends = {p["partition"]: p["end"] for p in one["partitions"]}
    assert committed[0] == 1 and one["lag"] == ends[0] - 1 + (ends[1] - committed[1])


async def test_reset_offsets_is_refused_while_the_group_has_members_naming_them(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("busy")
    await produce(infra, topic, 4)
    await consume(infra, group, topic, expected=4)

    async with member(infra, group, topic):
        refused = await sagakit(
            "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute"
        )
        dry = await sagakit("groups", "reset-offsets", group, "--topic", topic, "--to-earliest")
        tail = await sagakit("tail", topic, "--group", group)
    after = await described(sagakit, group)

    assert refused.exit_code == 1
    (line,) = refused.error_lines
    assert line.startswith(f"sagakit: group {group} is Stable with 1 member(s): lag-test-consumer")
    assert line.endswith("stop them before resetting its offsets")
    assert dry.exit_code == 0 and "--execute would be refused" in dry.stderr
    assert tail.exit_code == 1 and "stop them before tailing as the group" in tail.stderr
    assert after["lag"] == 0  # nothing moved


async def test_an_unknown_group_and_a_wrong_reset_are_one_line_errors(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("nobody")

    unknown = await sagakit("groups", "describe", group)
    two_targets = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--to-latest"
    )
    bad_time = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--to-datetime", "yesterday"
    )
    bad_partition = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--partition", "7"
    )

    assert unknown.exit_code == 1
    assert unknown.error_lines == [
        f"sagakit: no consumer group {group!r}; sagakit groups list shows them"
    ]
    assert two_targets.exit_code == 2 and len(two_targets.error_lines) == 1
    assert "give exactly one of --to-earliest" in two_targets.stderr
    assert bad_time.exit_code == 2 and "is not an ISO 8601 time" in bad_time.stderr
    assert bad_partition.exit_code == 1
    assert bad_partition.error_lines == [f"sagakit: {topic} has no partition 7 (it has 2)"]


async def test_reset_offsets_shift_by_moves_each_partition_from_its_committed_offset(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("shift")
    await produce(infra, topic, 10)
    await consume(infra, group, topic, expected=10)
    before = {
        p["partition"]: p["committed"] for p in (await described(sagakit, group))["partitions"]
    }

    plan = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--shift-by", "-2", "--json"
    )
    back = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--shift-by", "-2", "--execute"
    )
    after_back = await described(sagakit, group)
    past_end = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--shift-by", "100", "--execute"
    )
    after_forward = await described(sagakit, group)

    assert plan.exit_code == 0, plan.stderr
    assert {r["partition"]: r["new"] for r in plan.json()["partitions"]} == {
        n: max(at - 2, 0) for n, at in before.items()
    }
    assert back.exit_code == 0, back.stderr
    assert {p["partition"]: p["committed"] for p in after_back["partitions"]} == {
        n: max(at - 2, 0) for n, at in before.items()
    }
    assert after_back["lag"] == sum(min(at, 2) for at in before.values())
    assert past_end.exit_code == 0 and "past the end" in past_end.stdout
    assert after_forward["lag"] == 0  # kept within each partition: at its end


async def test_reset_offsets_by_duration_goes_back_that_far_in_time(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("duration")
    await produce(infra, topic, 5)
    await consume(infra, group, topic, expected=5)

    iso = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--by-duration", "PT1H", "--execute"
    )
    back_an_hour = await described(sagakit, group)
    short = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--by-duration", "0s", "--execute"
    )
    now = await described(sagakit, group)
    wrong = await sagakit(
        "groups", "reset-offsets", group, "--topic", topic, "--by-duration", "an hour"
    )

    assert iso.exit_code == 0, iso.stderr
    assert back_an_hour["lag"] == 5  # every record is younger than an hour
    assert short.exit_code == 0, short.stderr
    assert now["lag"] == 0  # nothing younger than now: the end
    assert wrong.exit_code == 2 and len(wrong.error_lines) == 1
    assert "'an hour' is not a duration" in wrong.stderr


async def test_groups_delete_removes_a_stopped_group_and_refuses_one_with_members(
    sagakit: Sagakit, infra: Infrastructure
) -> None:
    topic, group = await a_topic(sagakit, infra), infra.unique("delete")
    await produce(infra, topic, 3)
    await consume(infra, group, topic, expected=3)

    async with member(infra, group, topic):
        refused = await sagakit("groups", "delete", group, "--yes")
    still_there = await described(sagakit, group)
    deleted = await sagakit("groups", "delete", group, "--yes")
    gone = await sagakit("groups", "describe", group)
    again = await sagakit("groups", "delete", group, "--yes")

    assert refused.exit_code == 1
    (line,) = refused.error_lines
    assert line.startswith(f"sagakit: group {group} is Stable with 1 member(s): lag-test-consumer")
    assert line.endswith("stop them before deleting it")
    assert still_there["lag"] == 0 and still_there["partitions"]
    assert deleted.exit_code == 0, deleted.stderr
    assert deleted.stdout == f"deleted consumer group {group}\n"
    assert gone.exit_code == 1 and "no consumer group" in gone.stderr
    assert again.error_lines == [
        f"sagakit: no consumer group {group!r}; sagakit groups list shows them"
    ]
