"""sagakit dlq list, show and replay, against a real Kafka broker.

The dead letters are written as the consumer runner writes them (``dead_letter_headers``);
the system's own dead letter, replayed until its saga completes, is in tests/e2e.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from services.events import CATALOGUE
from shared.contracts.errors import PermanentError
from shared.contracts.topics import Topics, ensure_topics
from shared.publishing.dlq import dead_letter_headers
from tests.cli_support import Sagakit
from tests.infra import Infrastructure

Headers = list[tuple[str, bytes]]


def event(order_id: str, event_id: str) -> bytes:
    return json.dumps(
        {"event_id": event_id, "event_type": "OrderCreated", "order_id": order_id}
    ).encode()


class DeadLetters:
    """The catalogue's order-created topic and its DLQ, under a prefix of the test's own."""

    def __init__(self, infra: Infrastructure) -> None:
        self.infra = infra
        self.prefix = infra.topic_prefix("dlq")
        self.topic = Topics(CATALOGUE, self.prefix).for_event("OrderCreated")
        self.dlq = Topics.dlq(self.topic)
        self.added = 0

    async def create(self) -> None:
        options = {"bootstrap_servers": self.infra.kafka_bootstrap}
        await ensure_topics(options, [self.topic, self.dlq], partitions=1)

    async def add(
        self,
        key: str,
        value: bytes,
        error: Exception,
        headers: Headers,
        *,
        failed_at: datetime | None = None,
    ) -> None:
        """A dead letter of the record read at offset 7, 8, 9... of the original topic."""
        self.added += 1
        failed: Any = ConsumerRecord(
            topic=self.topic,
            partition=0,
            offset=6 + self.added,
            timestamp=0,
            timestamp_type=0,
            key=key.encode(),
            value=value,
            checksum=None,
            serialized_key_size=len(key),
            serialized_value_size=len(value),
            headers=headers,
        )
        dlq_headers = dead_letter_headers(
            failed,
            group=f"{self.prefix}payment",
            error=error,
            attempts=3,
            failed_at=failed_at or datetime.now(UTC),
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.infra.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(self.dlq, value, key=key.encode(), headers=dlq_headers)
        finally:
            await producer.stop()


@pytest.fixture
async def letters(infra: Infrastructure) -> DeadLetters:
    found = DeadLetters(infra)
    await found.create()
    await found.add(
        "order-1", event("order-1", "e-1"), PermanentError("no such sku"), [("event_id", b"e-1")]
    )
    await found.add("order-2", b"\xff not an event", ValueError("not JSON"), [])
    await found.add(
        "order-3", event("order-3", "e-3"), PermanentError("declined"), [("event_id", b"e-3")]
    )
    return found


@pytest.fixture
def sagakit(infra: Infrastructure, letters: DeadLetters, tmp_path: Path) -> Sagakit:
    settings = {
        "SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "SAGAKIT_TOPIC_PREFIX": letters.prefix,
    }
    return Sagakit(settings, tmp_path / "stack.env")


async def test_dlq_list_counts_each_dead_letter_topic_with_its_error_types(
    sagakit: Sagakit, letters: DeadLetters
) -> None:
    listed = await sagakit("dlq", "list", "--json")
    shown = await sagakit("dlq", "list")

    (row,) = listed.json()  # the only DLQ of the catalogue that exists under this prefix
    assert row["topic"] == letters.dlq
    assert (row["count"], row["error_types"]) == (3, {"PermanentError": 2, "ValueError": 1})
    assert row["oldest"] <= row["newest"] and row["newest"].endswith("Z")
    assert "PermanentError x2, ValueError x1" in shown.stdout
    assert shown.stdout.splitlines()[-1] == "3 dead letter(s) in 1 topic(s)"


async def test_dlq_show_gives_each_record_with_its_dlq_headers(
    sagakit: Sagakit, letters: DeadLetters
) -> None:
    shown = await sagakit("dlq", "show", letters.dlq, "--json")
    two = await sagakit("dlq", "show", letters.dlq, "--limit", "2")

    records = shown.json_lines()
    assert [r["key"] for r in records] == ["order-1", "order-2", "order-3"]  # one partition
    headers = records[0]["headers"]
    assert headers["dlq.original.topic"] == letters.topic
    assert headers["dlq.consumer.group"] == f"{letters.prefix}payment"
    assert (headers["dlq.error.type"], headers["dlq.error.message"]) == (
        "PermanentError",
        "no such sku",
    )
    assert (headers["dlq.attempts"], headers["dlq.original.offset"]) == ("3", "7")
    assert records[1]["value_encoding"] == "base64"
    assert two.stdout.splitlines()[-1] == f"2 dead letter(s) shown from {letters.dlq}"
    assert "  dlq.error.type: ValueError" in two.stdout


async def test_a_dry_run_publishes_nothing(sagakit: Sagakit, letters: DeadLetters) -> None:
    planned = await sagakit("dlq", "replay", letters.dlq, "--all", "--dry-run")
    original = await sagakit("tail", letters.topic, "--from-beginning", "--json")

    assert planned.exit_code == 0
    assert planned.stdout.splitlines()[-1] == f"would replay 3 dead letter(s) from {letters.dlq}"
    assert original.stdout == ""


async def test_replay_by_event_id_and_by_order_id_republishes_those_as_first_published(
    sagakit: Sagakit, letters: DeadLetters
) -> None:
    by_event = await sagakit("dlq", "replay", letters.dlq, "--event-id", "e-3", "--json")
    by_order = await sagakit("dlq", "replay", letters.dlq, "--order-id", "order-2")
    republished = await sagakit("tail", letters.topic, "--from-beginning", "--json")

    assert by_event.json()["records"] == [
        {
            "to": letters.topic,
            "key": "order-3",
            "event_type": None,
            "event_id": "e-3",
            "group": f"{letters.prefix}payment",
            "from": f"{letters.dlq}[0]@2",
        }
    ]
    assert by_event.json()["refused"] == []
    assert by_order.stdout.splitlines()[-1] == f"replayed 1 dead letter(s) from {letters.dlq}"
    records = republished.json_lines()
    assert sorted(r["key"] for r in records) == ["order-2", "order-3"]
    # The dlq.* headers stay behind: the consumers meet the record as it first was, and the
    # group that dead-lettered it alone handles it.
    assert all(not name.startswith("dlq.") for r in records for name in r["headers"])
    assert next(r for r in records if r["key"] == "order-3")["headers"] == {
        "event_id": "e-3",
        "sagakit.replay.group": f"{letters.prefix}payment",
        "sagakit.replay.of": f"{letters.topic}[0]@9",
    }


async def test_replay_says_which_records_or_refuses(sagakit: Sagakit, letters: DeadLetters) -> None:
    unsaid = await sagakit("dlq", "replay", letters.dlq)
    both = await sagakit("dlq", "replay", letters.dlq, "--all", "--order-id", "order-1")
    missing = await sagakit("dlq", "replay", letters.dlq + "-nope", "--all")
    unprefixed = await sagakit("dlq", "show", "order-created-dlq")

    assert unsaid.exit_code == 2
    assert unsaid.error_lines == [
        "sagakit: Invalid value: say which: --event-id ID, --order-id ID or --all "
        "(see: sagakit dlq replay --help)"
    ]
    assert both.exit_code == 2 and len(both.error_lines) == 1
    assert missing.exit_code == 1 and len(missing.error_lines) == 1
    assert f"no topic '{letters.dlq}-nope'" in missing.stderr
    assert unprefixed.exit_code == 1 and len(unprefixed.error_lines) == 1


async def test_replay_refuses_a_dead_letter_older_than_the_inbox_remembers_unless_told(
    infra: Infrastructure, letters: DeadLetters, tmp_path: Path
) -> None:
    await letters.add(
        "order-4",
        event("order-4", "e-4"),
        PermanentError("no such sku"),
        [("event_id", b"e-4")],
        failed_at=datetime.now(UTC) - timedelta(hours=3, minutes=5),
    )
    settings = {
        "SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "SAGAKIT_TOPIC_PREFIX": letters.prefix,
        "SAGAKIT_INBOX_RETENTION_HOURS": "2",  # as the services that consume it are told
    }
    sagakit = Sagakit(settings, tmp_path / "short.env")

    refused = await sagakit("dlq", "replay", letters.dlq, "--order-id", "order-4")
    refused_json = await sagakit("dlq", "replay", letters.dlq, "--all", "--json")
    forced = await sagakit(
        "dlq", "replay", letters.dlq, "--order-id", "order-4", "--past-inbox-retention"
    )
    republished = await sagakit("tail", letters.topic, "--from-beginning", "--json")

    assert refused.exit_code == 0
    lines = refused.stdout.splitlines()
    assert lines[-3] == (
        f"refused {letters.dlq}[0]@3: dead-lettered 3 hours ago, past the inbox's 2-hour "
        "memory: replaying it could apply it twice; --past-inbox-retention replays it anyway, "
        f"once you know {letters.prefix}payment never applied it"
    )
    assert lines[-2] == (
        "refused 1 dead letter(s) dead-lettered more than 2 hours ago, past the inbox's 2-hour "
        "memory (SAGAKIT_INBOX_RETENTION_HOURS): replaying them could apply them twice; "
        "--past-inbox-retention replays them anyway"
    )
    assert lines[-1] == f"replayed 0 dead letter(s) from {letters.dlq}"
    found = refused_json.json()
    assert [r["key"] for r in found["records"]] == ["order-1", "order-2", "order-3"]
    assert [r["key"] for r in found["refused"]] == ["order-4"]
    assert forced.stdout.splitlines()[-1] == f"replayed 1 dead letter(s) from {letters.dlq}"
    keys = [r["key"] for r in republished.json_lines()]
    assert sorted(keys) == ["order-1", "order-2", "order-3", "order-4"]  # order-4 once
