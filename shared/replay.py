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

Command line::

    python -m shared.replay <dlq-topic> [--order-id ID] [--bootstrap HOST:PORT] [--timeout S]

``dlq-topic`` is the full name (with the ``SAGAKIT_TOPIC_PREFIX``, if any); the connection
settings default to the ``SAGAKIT_*`` environment (``PlatformSettings``).
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

from shared.dlq import DLQ_HEADER_PREFIX, ReceivedRecord
from shared.settings import PlatformSettings, kafka_client_options

__all__ = ["original_headers", "replay_dead_letters"]

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


def _original_topic(record: DeadLetter) -> str | None:
    topics = [value.decode() for name, value in record.headers if name == ORIGINAL_TOPIC_HEADER]
    return topics[-1] if topics else None


async def replay_dead_letters(
    client_options: Mapping[str, Any],
    dlq_topic: str,
    *,
    match: Callable[[DeadLetter], bool] = lambda record: True,
    limit: int | None = None,
    timeout_s: float,
) -> int:
    """Re-publish the dead letters of ``dlq_topic`` that ``match`` accepts; return how many.

    ``client_options`` are the aiokafka connection options (``kafka_client_options``).
    Records are taken partition by partition, oldest first, up to ``limit`` of them. A
    record without a ``dlq.original.topic`` header cannot be placed: it is logged and
    skipped. Raises ``TimeoutError`` when the whole run takes longer than ``timeout_s``
    (nothing is published when the time runs out while reading), and ``LookupError`` when
    the topic does not exist.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    # Idempotent and acks=all, as shared.producer.build_producer makes them (which needs a
    # service's full settings; these options may come from anywhere).
    producer = AIOKafkaProducer(**client_options, acks="all", enable_idempotence=True)
    async with asyncio.timeout(timeout_s):
        try:
            await producer.start()
            chosen = await _read_matching(client_options, producer, dlq_topic, match, limit)
            await _publish(producer, chosen)
        finally:
            await producer.stop()
    log.info("replayed %d dead letter(s) from %s", len(chosen), dlq_topic)
    return len(chosen)


async def _read_matching(
    client_options: Mapping[str, Any],
    producer: AIOKafkaProducer,
    dlq_topic: str,
    match: Callable[[DeadLetter], bool],
    limit: int | None,
) -> list[tuple[str, DeadLetter]]:
    consumer = AIOKafkaConsumer(
        **client_options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        # Checked first: asking for the partitions of a missing topic may create it.
        if dlq_topic not in await consumer.topics():
            raise LookupError(f"no topic {dlq_topic!r} on the cluster: check its name and prefix")
        numbers = await producer.partitions_for(dlq_topic)
        partitions = [TopicPartition(dlq_topic, number) for number in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # The end as of now: what is dead-lettered during the replay waits for the next run.
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        chosen: list[tuple[str, DeadLetter]] = []
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                if limit is not None and len(chosen) >= limit:
                    return chosen
                batch = await consumer.getmany(tp, timeout_ms=POLL_TIMEOUT_MS)
                for record in batch.get(tp, []):
                    if record.offset >= ends[tp] or (limit is not None and len(chosen) >= limit):
                        break
                    if not match(record):
                        continue
                    topic = _original_topic(record)
                    if topic is None:
                        log.warning(
                            "%s[%d]@%d has no %s header: skipped",
                            tp.topic,
                            tp.partition,
                            record.offset,
                            ORIGINAL_TOPIC_HEADER,
                        )
                        continue
                    chosen.append((topic, record))
        return chosen
    finally:
        await consumer.stop()


async def _publish(producer: AIOKafkaProducer, chosen: Sequence[tuple[str, DeadLetter]]) -> None:
    """Send every record, then wait until the broker has acknowledged them all."""
    sent = [
        await producer.send(
            topic, value=record.value, key=record.key, headers=original_headers(record)
        )
        for topic, record in chosen
    ]
    await asyncio.gather(*sent)


def _order_id_matcher(order_id: str) -> Callable[[DeadLetter], bool]:
    key = order_id.encode()
    return lambda record: record.key == key


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shared.replay",
        description="Re-publish dead letters to the topics they came from.",
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


async def _main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    overrides = {"kafka_bootstrap": args.bootstrap} if args.bootstrap else {}
    settings = PlatformSettings(service_name="replay", **overrides)
    match = _order_id_matcher(args.order_id) if args.order_id else (lambda record: True)
    count = await replay_dead_letters(
        kafka_client_options(settings), args.dlq_topic, match=match, timeout_s=args.timeout
    )
    print(f"replayed {count} dead letter(s) from {args.dlq_topic}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; see the module docstring."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_main(sys.argv[1:] if argv is None else argv))
    except (LookupError, TimeoutError) as error:
        print(f"replay failed: {error or type(error).__name__}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
