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
``--order-id``) rather than relying on a remembered position.

For whom: each copy is for the group that gave up on the record (its ``dlq.consumer.group``),
named in its ``sagakit.replay.group`` header; every other group reading the topic commits
past it without handling it (``shared.publishing.replay_target``). A record that still fails
therefore adds one dead letter per copy, not one per group. Several dead letters of one record for
one group (the record dead-lettered, replayed, dead-lettered again...: ``sagakit.replay.of``
links them) make one copy, so each run adds at most one dead letter per group and record. A
dead letter the outbox relay wrote (``dlq.original.offset`` -1: no group ever read it) goes
back for every group, as a first publication does.

How old: the inbox that makes a second delivery harmless forgets after
``SAGAKIT_INBOX_RETENTION_HOURS`` (``shared.publishing.retention``), while dead letters are kept for
ever. A dead letter older than that is refused (``ReplayPlan.forgotten``) unless the caller says
otherwise (the CLI's ``--past-inbox-retention``): see ``plan_replay`` for why its age is
counted from when it was dead-lettered.

Writing: an idempotent ``acks=all`` producer, and the count returned only once the broker has
acknowledged every record. The matching records are collected first and published after, so
a run that times out while reading publishes nothing.

Command line: ``sagakit dlq replay`` (shared/ops/cli/dlq.py), which also shows what it would
replay (``--dry-run``) and picks records by event id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from shared.contracts.topics import existing_partitions
from shared.ops.dead_letter_index import read_at
from shared.publishing.dlq import DLQ_HEADER_PREFIX, ReceivedRecord
from shared.publishing.replay_target import (
    REPLAY_GROUP_HEADER,
    REPLAY_HEADERS,
    REPLAY_OF_HEADER,
    replay_header,
)

__all__ = [
    "DeadLetter",
    "ReplayPlan",
    "forgotten_reason",
    "forgotten_summary",
    "original_headers",
    "original_topic",
    "plan_replay",
    "read_dead_letters",
    "replay_dead_letters",
    "replay_headers",
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


def replay_headers(record: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers of the copy a replay sends: the original ones, and, when a consumer group
    gave up on the record, ``sagakit.replay.group`` naming it and ``sagakit.replay.of``
    naming the record as first read (``shared.publishing.replay_target``)."""
    kept = [(name, value) for name, value in original_headers(record) if name not in REPLAY_HEADERS]
    group, origin = _consumer_group(record), _origin(record)
    if group is None or origin is None:
        return kept  # written by the outbox relay: no group has read it yet
    return [*kept, (REPLAY_GROUP_HEADER, group.encode()), (REPLAY_OF_HEADER, origin.encode())]


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay of some dead letters sends, and what it leaves, with why."""

    send: list[DeadLetter] = field(default_factory=list)
    """One per group and record, oldest first per partition."""
    repeats: list[DeadLetter] = field(default_factory=list)
    """Dead letters of a record for a group that ``send`` already has a copy for."""
    forgotten: list[tuple[DeadLetter, timedelta]] = field(default_factory=list)
    """Dead letters older than the inbox's memory, with their age: refused."""
    memory: timedelta | None = None
    """The inbox's memory they were measured against; None: not measured (the override)."""


def plan_replay(
    letters: Sequence[DeadLetter], *, memory: timedelta | None, now: datetime | None = None
) -> ReplayPlan:
    """Which of ``letters`` (placeable ones, as ``read_dead_letters`` gives them) to send.

    One copy per group and record: of several dead letters of one record for one group,
    the newest is sent, in the place of the first. Then a dead letter older than ``memory``
    (the inboxes' retention, ``PlatformSettings.inbox_retention``; None: any age) is
    refused, its age counted from ``dlq.failed_at``.

    Why that clock: the group that dead-lettered the record had not applied it when it gave
    up (its handler's effects and its inbox row roll back together), so any application of
    that event by that group, through an earlier replay of this or another copy, is later
    than that moment, and its inbox row, kept for ``memory`` after it was written, is still
    there as long as the dead letter is younger than ``memory``: the replayed copy then meets
    it and is skipped. Past that, the row may be gone and the copy applied a second time.
    (The copy goes to that group alone, so no other group's inbox is involved.) The time the
    event was first published would refuse too much (an event that failed for a week is
    still unapplied), and the time of the replay is not a bound at all.
    """
    now = now or datetime.now(UTC)
    chosen: dict[tuple[str, str] | int, DeadLetter] = {}
    repeats: list[DeadLetter] = []
    for index, letter in enumerate(letters):
        group, origin = _consumer_group(letter), _origin(letter)
        key: tuple[str, str] | int = (group, origin) if group and origin else index
        if key in chosen:
            repeats.append(chosen[key])
        chosen[key] = letter  # the newest, in the place of the first
    send: list[DeadLetter] = []
    forgotten: list[tuple[DeadLetter, timedelta]] = []
    for letter in chosen.values():
        age = now - _dead_lettered_at(letter)
        if memory is not None and age > memory:
            forgotten.append((letter, age))
        else:
            send.append(letter)
    return ReplayPlan(send, repeats, forgotten, memory)


def forgotten_reason(letter: DeadLetter, age: timedelta, memory: timedelta) -> str:
    """Why ``letter`` is refused, in a sentence an operator can act on."""
    group = _consumer_group(letter) or "every group"
    return (
        f"{letter.topic}[{letter.partition}]@{letter.offset}: dead-lettered {_span(age)} ago, "
        f"past the inbox's {_span(memory, adjective=True)} memory: replaying it could apply it "
        f"twice; --past-inbox-retention replays it anyway, once you know {group} never "
        "applied it"
    )


def forgotten_summary(count: int, memory: timedelta) -> str:
    """The line that sums up ``count`` refused dead letters."""
    return (
        f"refused {count} dead letter(s) dead-lettered more than {_span(memory)} ago, past the "
        f"inbox's {_span(memory, adjective=True)} memory (SAGAKIT_INBOX_RETENTION_HOURS): "
        "replaying them could apply them twice; --past-inbox-retention replays them anyway"
    )


async def replay_dead_letters(
    client_options: Mapping[str, Any],
    dlq_topic: str,
    *,
    match: Callable[[DeadLetter], bool] = lambda record: True,
    limit: int | None = None,
    at: tuple[int, int] | None = None,
    memory: timedelta | None,
    timeout_s: float,
) -> ReplayPlan:
    """Re-publish the dead letters of ``dlq_topic`` that ``match`` accepts; return the plan
    carried out (``plan_replay``: one copy per group and record; older than ``memory``,
    refused and logged; None replays any age).

    ``client_options`` are the aiokafka connection options (``kafka_client_options``).
    Records are taken partition by partition, oldest first, up to ``limit`` of them read. A
    record without a ``dlq.original.topic`` header cannot be placed: it is logged and
    skipped. Raises ``TimeoutError`` when the whole run takes longer than ``timeout_s``
    (nothing is published when the time runs out while reading), and ``LookupError`` when
    the topic does not exist. With ``at`` (partition, offset), only the record there is read.
    """
    async with asyncio.timeout(timeout_s):
        chosen = await read_dead_letters(
            client_options, dlq_topic, match=_placeable(match), limit=limit, at=at
        )
        plan = plan_replay(chosen, memory=memory)
        for letter, age in plan.forgotten:
            log.warning("not replayed: %s", forgotten_reason(letter, age, memory or age))
        await republish(client_options, plan.send)
    log.info("replayed %d dead letter(s) from %s", len(plan.send), dlq_topic)
    return plan


def _dlq_header(letter: DeadLetter, name: str) -> str | None:
    return replay_header(letter.headers, f"{DLQ_HEADER_PREFIX}{name}")


def _consumer_group(letter: DeadLetter) -> str | None:
    """The group that gave up on the record; None when no group read it (the outbox relay
    dead-letters a record Kafka refused: ``dlq.original.offset`` -1)."""
    offset = _dlq_header(letter, "original.offset")
    if offset is None or not offset.lstrip("-").isdigit() or int(offset) < 0:
        return None
    return _dlq_header(letter, "consumer.group")


def _origin(letter: DeadLetter) -> str | None:
    """The record as first read, ``topic[partition]@offset``, through every replay."""
    earlier = replay_header(letter.headers, REPLAY_OF_HEADER)
    if earlier:
        return earlier
    where = [_dlq_header(letter, f"original.{part}") for part in ("topic", "partition", "offset")]
    if None in where:
        return None
    topic, partition, offset = where
    return f"{topic}[{partition}]@{offset}"


def _dead_lettered_at(letter: DeadLetter) -> datetime:
    """``dlq.failed_at``, else the dead letter's own Kafka timestamp (its write)."""
    stamp = _dlq_header(letter, "failed_at")
    if stamp:
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            pass
    millis = getattr(letter, "timestamp", None)
    if isinstance(millis, int) and millis > 0:
        return datetime.fromtimestamp(millis / 1000, UTC)
    return datetime.min.replace(tzinfo=UTC)  # no clue: as old as can be, refused


def _span(length: timedelta, *, adjective: bool = False) -> str:
    """``9 days``, ``5 hours``, ``3 minutes`` (``7-day`` as an adjective), rounded down."""
    seconds = int(length.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size or unit == "second":
            count = seconds // size
            if adjective:
                return f"{count}-{unit}"
            return f"{count} {unit}{'' if count == 1 else 's'}"
    raise AssertionError("unreachable")


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
    """Send each record that names its original topic back there, as first published plus
    the headers that name the group it is for (``replay_headers``); return what was sent,
    once the broker has acknowledged all of it."""
    placed = [(topic, record) for record in records if (topic := original_topic(record))]
    if not placed:
        return []
    # Idempotent and acks=all, as shared.publishing.producer.build_producer makes them (which needs
    # a service's full settings; these options may come from anywhere).
    producer = AIOKafkaProducer(**client_options, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send(
                topic, value=record.value, key=record.key, headers=replay_headers(record)
            )
            for topic, record in placed
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return placed
