"""Replaying dead letters (shared.ops.replay), against a real Kafka broker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from shared.contracts.errors import PermanentError
from shared.contracts.topics import Topics, ensure_topics
from shared.ops.cli.app import main
from shared.ops.replay import replay_dead_letters
from shared.publishing.dlq import dead_letter_headers
from shared.publishing.replay_target import REPLAY_HEADERS
from tests.infra import Infrastructure

Headers = list[tuple[str, bytes]]
WEEK = timedelta(days=7)  # the services' default inbox retention


def options(infra: Infrastructure) -> dict[str, Any]:
    return {"bootstrap_servers": infra.kafka_bootstrap}


async def topics_with_dlq(infra: Infrastructure) -> tuple[str, str]:
    topic = infra.topic("replay")
    await ensure_topics(options(infra), [topic, Topics.dlq(topic)], partitions=3)
    return topic, Topics.dlq(topic)


def failed(topic: str, key: bytes, value: bytes, headers: Headers, offset: int) -> Any:
    """What the consumer runner dead-letters: the record as it was read from ``topic``."""
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=headers,
    )


async def dead_letter(
    infra: Infrastructure,
    topic: str,
    records: list[tuple[bytes, bytes, Headers]],
    *,
    group: str = "payment",
    offsets: list[int] | None = None,
    failed_at: datetime | None = None,
) -> None:
    """Write ``records`` to ``topic``'s DLQ as the consumer runner does, dlq.* headers included
    (read at ``offsets`` of ``topic``, 0, 1, 2... unless given)."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for index, (key, value, headers) in enumerate(records):
            offset = offsets[index] if offsets else index
            record = failed(topic, key, value, headers, offset)
            dlq_headers = dead_letter_headers(
                record,
                group=group,
                error=PermanentError("injected permanent fault"),
                attempts=1,
                failed_at=failed_at or datetime.now(UTC),
            )
            await producer.send_and_wait(Topics.dlq(topic), value, key=key, headers=dlq_headers)
    finally:
        await producer.stop()


async def read_all(infra: Infrastructure, topic: str, expected: int) -> list[Any]:
    """Every record of ``topic`` once ``expected`` have arrived (or after 10 s), then 1 s more
    to see any extra one."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 10
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            records += [record for batch in batches.values() for record in batch]
        batches = await consumer.getmany(timeout_ms=1000)
        records += [record for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()
    return records


def wire(record: Any) -> Wire:
    """The record as first published: what a replayed copy adds to say for whom is left out
    (``test_a_copy_names_the_group_it_is_for_and_the_record_it_descends_from``)."""
    return record.key, record.value, [h for h in record.headers if h[0] not in REPLAY_HEADERS]


Wire = tuple[bytes, bytes, Headers]

ORDER_1: Wire = (b"order-1", b'{"event_type": "OrderCreated", "n": 1}', [("event_id", b"e-1")])
ORDER_2: Wire = (
    b"order-2",
    b"\x00 not even json",
    [("event_id", b"e-2"), ("traceparent", b"00-ab")],
)
ORDER_1_AGAIN: Wire = (b"order-1", b'{"n": 3}', [])


async def test_replay_republishes_each_dead_letter_as_first_published(
    infra: Infrastructure,
) -> None:
    topic, dlq = await topics_with_dlq(infra)
    await dead_letter(infra, topic, [ORDER_1, ORDER_2])

    replayed = await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)

    assert len(replayed.send) == 2
    republished = await read_all(infra, topic, expected=2)
    assert sorted(map(wire, republished)) == sorted([ORDER_1, ORDER_2])


async def test_replay_takes_only_the_records_that_match(infra: Infrastructure) -> None:
    topic, dlq = await topics_with_dlq(infra)
    await dead_letter(infra, topic, [ORDER_1, ORDER_2, ORDER_1_AGAIN])

    replayed = await replay_dead_letters(
        options(infra),
        dlq,
        match=lambda record: record.key == b"order-1",
        memory=WEEK,
        timeout_s=30,
    )

    assert len(replayed.send) == 2
    republished = await read_all(infra, topic, expected=2)
    assert sorted(map(wire, republished)) == sorted([ORDER_1, ORDER_1_AGAIN])


async def test_replay_stops_at_the_limit(infra: Infrastructure) -> None:
    topic, dlq = await topics_with_dlq(infra)
    # One key: one partition, so "the first two" is well defined.
    await dead_letter(infra, topic, [ORDER_1, ORDER_1_AGAIN, ORDER_1])

    replayed = await replay_dead_letters(options(infra), dlq, limit=2, memory=WEEK, timeout_s=30)

    assert len(replayed.send) == 2
    republished = await read_all(infra, topic, expected=2)
    assert list(map(wire, republished)) == [ORDER_1, ORDER_1_AGAIN]


async def test_replaying_again_reads_the_dead_letters_again_from_the_beginning(
    infra: Infrastructure,
) -> None:
    topic, dlq = await topics_with_dlq(infra)
    await dead_letter(infra, topic, [ORDER_1])

    first = await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)
    second = await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)

    # No consumer group remembers a position: consumers skip the copy by its event_id.
    assert (len(first.send), len(second.send)) == (1, 1)
    assert list(map(wire, await read_all(infra, topic, expected=2))) == [ORDER_1, ORDER_1]


async def test_a_record_that_does_not_say_where_it_came_from_is_skipped(
    infra: Infrastructure,
) -> None:
    topic, dlq = await topics_with_dlq(infra)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(dlq, b"stray", key=b"order-1")
    finally:
        await producer.stop()
    await dead_letter(infra, topic, [ORDER_2])

    replayed = await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)
    assert len(replayed.send) == 1
    assert list(map(wire, await read_all(infra, topic, expected=1))) == [ORDER_2]


async def test_an_empty_dead_letter_topic_replays_nothing(infra: Infrastructure) -> None:
    _, dlq = await topics_with_dlq(infra)

    replayed = await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)
    assert replayed.send == []


async def test_a_missing_topic_is_named_in_the_error(infra: Infrastructure) -> None:
    missing = infra.topic("no-such") + "-dlq"

    with pytest.raises(LookupError, match=missing):
        await replay_dead_letters(options(infra), missing, memory=WEEK, timeout_s=30)


async def test_the_command_line_replays_one_order(
    infra: Infrastructure, capsys: pytest.CaptureFixture[str]
) -> None:
    topic, dlq = await topics_with_dlq(infra)
    await dead_letter(infra, topic, [ORDER_1, ORDER_2])

    argv = ["--bootstrap", infra.kafka_bootstrap, "dlq", "replay", dlq, "--order-id", "order-2"]
    # main() runs its own event loop: a worker thread keeps it apart from the test's.
    status = await asyncio.to_thread(main, argv)

    assert status == 0
    assert f"replayed 1 dead letter(s) from {dlq}" in capsys.readouterr().out
    assert list(map(wire, await read_all(infra, topic, expected=1))) == [ORDER_2]


async def test_a_copy_names_the_group_it_is_for_and_the_record_it_descends_from(
    infra: Infrastructure,
) -> None:
    topic, dlq = await topics_with_dlq(infra)
    await dead_letter(infra, topic, [ORDER_2], group="inventory", offsets=[41])

    await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)

    (copy,) = await read_all(infra, topic, expected=1)
    assert list(copy.headers) == [
        *ORDER_2[2],
        ("sagakit.replay.group", b"inventory"),
        ("sagakit.replay.of", f"{topic}[0]@41".encode()),
    ]


async def test_dead_letters_of_one_record_make_one_copy_per_group(infra: Infrastructure) -> None:
    topic, dlq = await topics_with_dlq(infra)
    # Read at offset 5 by three groups, all three giving up; inventory's dead letter came
    # twice (a replay that failed again keeps the record's origin in sagakit.replay.of).
    await dead_letter(infra, topic, [ORDER_1], group="inventory", offsets=[5])
    await dead_letter(infra, topic, [ORDER_1], group="order", offsets=[5])
    await dead_letter(infra, topic, [ORDER_1], group="analytics", offsets=[5])
    again = (*ORDER_1[:2], [*ORDER_1[2], ("sagakit.replay.of", f"{topic}[0]@5".encode())])
    await dead_letter(infra, topic, [again], group="inventory", offsets=[9])

    plan = await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)

    assert (len(plan.send), len(plan.repeats)) == (3, 1)
    copies = await read_all(infra, topic, expected=3)
    assert sorted(dict(c.headers)["sagakit.replay.group"] for c in copies) == [
        b"analytics",
        b"inventory",
        b"order",
    ]
    assert {dict(c.headers)["sagakit.replay.of"] for c in copies} == {f"{topic}[0]@5".encode()}


async def test_a_dead_letter_the_outbox_relay_wrote_goes_back_for_every_group(
    infra: Infrastructure,
) -> None:
    topic, dlq = await topics_with_dlq(infra)
    # Refused by Kafka before any group read it: offset -1, no group to aim at.
    await dead_letter(infra, topic, [ORDER_1], group="outbox relay payment/p-1", offsets=[-1])

    await replay_dead_letters(options(infra), dlq, memory=WEEK, timeout_s=30)

    (copy,) = await read_all(infra, topic, expected=1)
    assert list(copy.headers) == ORDER_1[2]


async def test_a_dead_letter_older_than_the_inbox_remembers_is_refused_unless_told(
    infra: Infrastructure,
) -> None:
    topic, dlq = await topics_with_dlq(infra)
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    await dead_letter(infra, topic, [ORDER_1], failed_at=three_hours_ago)
    await dead_letter(infra, topic, [ORDER_2], offsets=[1])  # just now

    refused = await replay_dead_letters(
        options(infra), dlq, memory=timedelta(hours=2), timeout_s=30
    )
    forced = await replay_dead_letters(options(infra), dlq, memory=None, timeout_s=30)

    assert [wire(letter)[0] for letter in refused.send] == [ORDER_2[0]]
    ((old, age),) = refused.forgotten
    assert old.key == ORDER_1[0] and timedelta(hours=3) <= age < timedelta(hours=4)
    assert sorted(wire(letter)[0] for letter in forced.send) == [ORDER_1[0], ORDER_2[0]]
    republished = await read_all(infra, topic, expected=3)
    assert sorted(record.key for record in republished) == [b"order-1", b"order-2", b"order-2"]
