"""Replaying dead letters: an operator's tool to put dead-lettered records back where they failed.

Once the cause of a dead letter is fixed (a bug deployed, a fault cleared), ``replay_dead_letters``
reads a dead-letter topic and re-publishes each matching record to its ``dlq.original.topic``,
with the same key and value byte for byte and its original headers minus the ``dlq.*`` ones,
so the consumers meet it again exactly as it was first published.

Reading: no consumer group. The DLQ is read from its beginning up to its end as it was when
the replay started (records dead-lettered meanwhile wait for the next run), and no offset is
committed anywhere. Replaying is therefore not "each dead letter once": running it twice
publishes the matching records twice. That is safe, because every consumer deduplicates by
``event_id`` (its inbox), so a replayed event that was already handled changes nothing; and it
is what an operator wants, since a dead letter replayed too early (cause not fixed yet) simply
lands in the DLQ again, and the next run sends it again. Narrow a run with ``match`` (the CLI's
``--order-id``) rather than relying on a remembered position. Every consumer group of the
original topic reads the replayed record, not only the one that gave up on it (its
``dlq.consumer.group``): the others handled that event already and skip it the same way.

Writing: an idempotent ``acks=all`` producer, and the count returned only once the broker has
acknowledged every record. The matching records are collected first and published after, so
a run that times out while reading publishes nothing.

Command line: ``sagakit dlq replay`` (shared/cli/dlq.py), which also shows what it would
replay (``--dry-run``) and picks records by event id. ``python -m shared.replay <dlq-topic>
[--order-id ID] [--bootstrap HOST:PORT] [--timeout S]`` still works: it runs that command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from shared.dead_letter_index import read_at
from shared.dlq import DLQ_HEADER_PREFIX, ReceivedRecord
from shared.topics import existing_partitions

__all__ = [
    "DeadLetter",
    "original_headers",
    "original_topic",
    "read_dead_letters",
    "replay_dead_letters",
    "republish",
]

log = logging.getLogger(__name__)

ORIGINAL_TOPIC_HEADER = "dlq.original.topic"
DEFAULT_TIMEOUT_S = 60.0
POLL_TIMEOUT_MS = 500

DeadLetter = ReceivedRecord
"""A record read from a dead-letter topic (aiokafka's ``ConsumerRecord`` fits)."""


def original_headers(record: DeadLetter) -> list[tuple[str, bytes]]:
    """The record's headers as first published: every header but the ``dlq.*`` ones."""
    return [
        (name, value) for name, value in record.headers if not name.startswith(DLQ_HEADER_PREFIX)
    ]


def original_topic(record: DeadLetter) -> str | None:
    """Where the dead letter was first published (its ``dlq.original.topic``), if it says."""
    topics = [value.decode() for name, value in record.headers if name == ORIGINAL_TOPIC_HEADER]
    return topics[-1] if topics else None


async def replay_dead_letters(
    client_options: Mapping[str, Any],
    dlq_topic: str,
    *,
    match: Callable[[DeadLetter], bool] = lambda record: True,
    limit: int | None = None,
    at: tuple[int, int] | None = None,
    timeout_s: float,
) -> int:
    """Re-publish the dead letters of ``dlq_topic`` that ``match`` accepts; return how many.

    ``client_options`` are the aiokafka connection options (``kafka_client_options``).
    Records are taken partition by partition, oldest first, up to ``limit`` of them. A
    record without a ``dlq.original.topic`` header cannot be placed: it is logged and
    skipped. Raises ``TimeoutError`` when the whole run takes longer than ``timeout_s``
    (nothing is published when the time runs out while reading), and ``LookupError`` when
    the topic does not exist. With ``at`` (partition, offset), only the record there is read.
    """
    async with asyncio.timeout(timeout_s):
        chosen = await read_dead_letters(
            client_options, dlq_topic, match=_placeable(match), limit=limit, at=at
        )
        await republish(client_options, chosen)
    log.info("replayed %d dead letter(s) from %s", len(chosen), dlq_topic)
    return len(chosen)


def _placeable(match: Callable[[DeadLetter], bool]) -> Callable[[DeadLetter], bool]:
    """``match``, less the records that do not say where they came from (logged)."""

    def accepts(record: DeadLetter) -> bool:
        if not match(record):
            return False
        if original_topic(record) is None:
            log.warning(
                "%s[%d]@%d has no %s header: skipped",
                record.topic,
                record.partition,
                record.offset,
                ORIGINAL_TOPIC_HEADER,
            )
            return False
        return True

    return accepts


async def read_dead_letters(
    client_options: Mapping[str, Any],
    dlq_topic: str,
    *,
    match: Callable[[DeadLetter], bool] = lambda record: True,
    limit: int | None = None,
    at: tuple[int, int] | None = None,
) -> list[DeadLetter]:
    """The records of ``dlq_topic`` that ``match`` accepts, partition by partition, oldest
    first, up to ``limit``: read from the beginning to the end as it was when this started,
    in no consumer group; with ``at`` (partition, offset), only the record there, sought to
    directly. ``LookupError`` when the topic does not exist."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    # All topics' metadata, not this one's by name: asking for a missing topic may create it.
    partitions = (await existing_partitions(client_options)).get(dlq_topic)
    if partitions is None:
        raise LookupError(f"no topic {dlq_topic!r} on the cluster: check its name and prefix")
    if at is not None:
        records = await read_at(client_options, [(dlq_topic, *at)])
        return [record for record in records if match(record)][:limit]
    consumer = AIOKafkaConsumer(
        **client_options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # The end as of now: what is dead-lettered meanwhile waits for the next run.
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        chosen: list[DeadLetter] = []
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                if limit is not None and len(chosen) >= limit:
                    return chosen
                batch = await consumer.getmany(tp, timeout_ms=POLL_TIMEOUT_MS)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp] or (limit is not None and len(chosen) >= limit):
                        break
                    if match(record):
                        chosen.append(record)
        return chosen
    finally:
        await consumer.stop()


async def republish(
    client_options: Mapping[str, Any], records: Sequence[DeadLetter]
) -> list[tuple[str, DeadLetter]]:
    """Send each record that names its original topic back there, as first published; return
    what was sent, once the broker has acknowledged all of it."""
    placed = [(topic, record) for record in records if (topic := original_topic(record))]
    if not placed:
        return []
    # Idempotent and acks=all, as shared.producer.build_producer makes them (which needs a
    # service's full settings; these options may come from anywhere).
    producer = AIOKafkaProducer(**client_options, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic, value=record.value, key=record.key, headers=original_headers(record)
            )
            for topic, record in placed
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return placed


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.replay",
        description="Re-publish dead letters to the topics they came from "
        "(the same as: sagakit dlq replay).",
    )
    parser.add_argument("dlq_topic", help="the dead-letter topic, prefix included")
    parser.add_argument("--order-id", help="replay only this order's dead letters")
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (default: SAGAKIT_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds for the whole run"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """The old command line, kept: it runs ``sagakit dlq replay`` with the same meaning."""
    from shared.cli.app import main as sagakit  # the CLI imports this module

    args = _parse(sys.argv[1:] if argv is None else argv)
    root = ["--timeout", str(args.timeout)]
    if args.bootstrap:
        root += ["--bootstrap", args.bootstrap]
    which = ["--order-id", args.order_id] if args.order_id else ["--all"]
    return sagakit([*root, "dlq", "replay", args.dlq_topic, *which])


if __name__ == "__main__":
    sys.exit(main())
