"""What the dead-letter topics hold, read incrementally, indexed in a store, and the newest
kept in memory.

The order service answers "which sagas are stuck" and the explorer shows the dead letters;
both need to know which entities have a record in a ``-dlq`` topic (every record is keyed
by its entity's id, the key its event type declares). ``DeadLetterIndex.refresh`` reads each
dead-letter partition from where the last refresh stopped up to its end as of now, with no
consumer group (nothing is committed, nobody else's position moves), and writes one row per
record to a ``DeadLetterStore`` (the order service's ``dead_letter_index`` table: topic,
partition, offset, key, when).

Memory is bounded whatever the DLQs hold: the store, not the process, knows every
dead-lettered entity (a query joins it; nothing lists them all in one statement), the
counts come from the partitions' offsets, and only the newest ``keep_per_topic`` records of
each topic are kept whole (headers and value) for display. A process that starts again
resumes after the store's last row of each partition (and reads the ``keep_per_topic``
before it again, for display); instances that share a store write the same rows, which the
store keeps once. One record is read by seeking to it (``read_at``), not by scanning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.contracts.catalogue import Catalogue
from shared.contracts.errors import NotAnEvent
from shared.contracts.events import Event
from shared.contracts.topics import existing_partitions
from shared.publishing.dlq import DLQ_HEADER_PREFIX

__all__ = ["DeadLetter", "DeadLetterIndex", "DeadLetterStore", "IndexedDeadLetter", "read_at"]

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 10.0
POLL_TIMEOUT_MS = 200


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, as it is stored."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    catalogue: Catalogue[Any] = field(compare=False, repr=False)
    """What its value is read with (``event``)."""

    @property
    def entity_key(self) -> str | None:
        """The record's key: the id of the event's entity (None for a record without one)."""
        return None if self.key is None else self.key.decode(errors="replace")

    @property
    def dlq_headers(self) -> dict[str, str]:
        """The ``dlq.*`` headers (docs/events.md): where it failed, who gave up, why."""
        return {
            name: value.decode(errors="replace")
            for name, value in self.headers
            if name.startswith(DLQ_HEADER_PREFIX)
        }

    @property
    def value_text(self) -> str:
        """The value as text (invalid UTF-8 shown as replacement characters)."""
        return (self.value or b"").decode(errors="replace")

    def indexed(self) -> IndexedDeadLetter:
        """The record's row in the index's store."""
        headers = self.dlq_headers
        return IndexedDeadLetter(
            self.topic,
            self.partition,
            self.offset,
            self.entity_key,
            self.timestamp,
            headers.get(f"{DLQ_HEADER_PREFIX}consumer.group"),
            headers.get(f"{DLQ_HEADER_PREFIX}error.type"),
        )

    def event(self) -> Event | str:
        """The value as an event, or why it is not one (poison bytes are dead-lettered too)."""
        try:
            event: Event = self.catalogue.decode(self.value)
        except NotAnEvent as error:
            return str(error)
        return event


@dataclass(frozen=True)
class IndexedDeadLetter:
    """Where one dead letter is, whose it is, when it was written, which group gave up on it
    and why: one row of the store."""

    topic: str
    partition: int
    offset: int
    entity_key: str | None
    dead_lettered_at: datetime
    consumer_group: str | None = None
    """Its ``dlq.consumer.group`` (the outbox relay's dead letters have none)."""
    error_type: str | None = None
    """Its ``dlq.error.type``."""


class DeadLetterStore(Protocol):
    """Where the index writes its rows (the order service's ``dead_letter_index`` table)."""

    async def last_rows(self, topics: Sequence[str]) -> dict[TopicPartition, IndexedDeadLetter]:
        """For each partition with rows, its row of the highest offset."""
        ...

    async def add(self, letters: Sequence[IndexedDeadLetter]) -> None:
        """Keep these rows; one already kept is left as it is."""
        ...

    async def forget(self, partition: TopicPartition, *, before: int | None = None) -> None:
        """Drop the rows of ``partition`` (those of records below ``before`` when given),
        records the topic no longer holds."""
        ...


class DeadLetterIndex:
    """The dead letters of ``topics``, refreshed on demand (``refresh``) into ``store``, their
    values read with ``catalogue``."""

    def __init__(
        self,
        client_options: Mapping[str, Any],
        topics: Sequence[str],
        store: DeadLetterStore,
        catalogue: Catalogue[Any],
        *,
        keep_per_topic: int = 200,
        min_interval_s: float = 1.0,
    ) -> None:
        self._options = dict(client_options)
        self._topics = list(topics)
        self._store = store
        self._catalogue = catalogue
        self._keep = keep_per_topic
        self._min_interval_s = min_interval_s
        self._next: dict[TopicPartition, int] | None = None  # None: not resumed from the store
        self._starts: dict[TopicPartition, int] = {}
        self._counts: dict[str, int] = dict.fromkeys(self._topics, 0)
        self._kept: dict[str, deque[DeadLetter]] = {
            topic: deque(maxlen=keep_per_topic) for topic in self._topics
        }
        self._lock = asyncio.Lock()
        self._refreshed_at: float | None = None

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    async def refresh(self) -> None:
        """Read what was dead-lettered since the last refresh (at most once per
        ``min_interval_s``: concurrent callers share one read). Raises what Kafka raises, and
        ``TimeoutError`` when the read takes longer than ``READ_TIMEOUT_S``."""
        async with self._lock:
            fresh = self._refreshed_at is not None and (
                time.monotonic() - self._refreshed_at < self._min_interval_s
            )
            if fresh:
                return
            async with asyncio.timeout(READ_TIMEOUT_S):
                await self._read_new()
            self._refreshed_at = time.monotonic()

    def counts(self) -> dict[str, int]:
        """How many dead letters each topic holds (as of the last refresh)."""
        return dict(self._counts)

    def newest(self, topic: str) -> list[DeadLetter]:
        """The newest dead letters of ``topic`` kept in memory, newest first."""
        return list(reversed(self._kept.get(topic, ())))

    def held(self) -> int:
        """How many entries the index holds in memory: the kept records and the partitions'
        positions, bounded by the topics and ``keep_per_topic``, not by the DLQs' size."""
        positions = len(self._next or {}) + len(self._starts)
        return positions + sum(len(kept) for kept in self._kept.values())

    async def read(self, positions: Sequence[tuple[str, int, int]]) -> list[DeadLetter]:
        """The dead letters at ``positions`` (topic, partition, offset), read by seeking to
        each; a position the topic no longer holds is left out."""
        return [
            _letter(record, self._catalogue) for record in await read_at(self._options, positions)
        ]

    async def _read_new(self) -> None:
        existing = await existing_partitions(self._options)
        partitions = [tp for topic in self._topics for tp in existing.get(topic, ())]
        if not partitions:
            return
        consumer = AIOKafkaConsumer(
            **self._options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            # Explicit offsets, asked for all partitions in one request each: a seek to the
            # beginning waits for its own reset, one partition after the other.
            starts: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            await self._forget_what_retention_removed(starts)
            self._counts = dict.fromkeys(self._topics, 0)
            for tp in partitions:
                self._counts[tp.topic] += ends[tp] - starts[tp]
            if self._next is None:
                self._next = await self._resume(consumer, starts, ends)
                consumer.assign(partitions)  # checking it read one partition at a time
            behind = []
            for tp in partitions:
                if self._next.get(tp, 0) > ends[tp]:
                    # It ends before where the index stood: deleted and created again.
                    await self._start_afresh(tp)
                start = max(starts[tp], self._next.get(tp, 0))  # retention may have moved it
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    behind.append(tp)
            while behind:
                batches = await consumer.getmany(*behind, timeout_ms=POLL_TIMEOUT_MS)
                letters = [
                    _letter(record, self._catalogue)
                    for tp, records in batches.items()
                    for record in records
                    if record.offset < ends[tp]
                ]
                await self._store.add([letter.indexed() for letter in letters])
                for letter in letters:
                    self._kept[letter.topic].append(letter)
                    # Once stored: a read cut short by the timeout resumes after what it
                    # stored, and the store keeps a row once however often it is added.
                    self._next[TopicPartition(letter.topic, letter.partition)] = letter.offset + 1
                behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
        finally:
            await consumer.stop()

    async def _forget_what_retention_removed(self, starts: Mapping[TopicPartition, int]) -> None:
        for tp, start in starts.items():
            if start > self._starts.get(tp, 0):
                await self._store.forget(tp, before=start)
            self._starts[tp] = start

    async def _resume(
        self,
        consumer: AIOKafkaConsumer,
        starts: Mapping[TopicPartition, int],
        ends: Mapping[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        """Where to read each partition on resuming from the store: after its last row, less
        the newest records read again for display.

        A row's position is only its record's while the topic is the one indexed: a topic
        deleted and created again (or a new Kafka cluster beside the same database) reuses
        its offsets. So the last row of each partition is checked against the record now at
        its offset (key and timestamp); a partition whose record differs or is gone, above
        what retention removed, is indexed afresh from its start.
        """
        last = await self._store.last_rows(self._topics)
        held = [(tp.topic, tp.partition, row.offset) for tp, row in last.items()]
        found = {
            (r.topic, r.partition, r.offset): r
            for r in await _records_at(consumer, held, starts, ends)
        }
        for tp, row in list(last.items()):
            if tp in starts and row.offset < starts[tp]:
                continue  # retention removed it, and its rows were forgotten with it
            record = found.get((tp.topic, tp.partition, row.offset))
            if record is None or not _is_indexed_as(record, row):
                await self._start_afresh(tp)
                del last[tp]
        return {tp: max(0, row.offset + 1 - self._keep) for tp, row in last.items()}

    async def _start_afresh(self, tp: TopicPartition) -> None:
        """Forget what was indexed of ``tp``: it no longer holds those records."""
        log.warning(
            "dead-letter index: %s[%d] is not the partition indexed (deleted and created "
            "again?): its rows are dropped and it is read again from its start",
            tp.topic,
            tp.partition,
        )
        await self._store.forget(tp)
        if self._next is not None:
            self._next.pop(tp, None)
        kept = self._kept.get(tp.topic)
        if kept is not None:
            others = [letter for letter in kept if letter.partition != tp.partition]
            self._kept[tp.topic] = deque(others, maxlen=self._keep)


async def read_at(
    client_options: Mapping[str, Any], positions: Sequence[tuple[str, int, int]]
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records at ``positions`` (topic, partition, offset), in that order, each read by
    assigning its partition alone and seeking to its offset: a fetch or two around it,
    whatever the topic holds. A position outside what its partition holds (a topic deleted
    since included) is left out."""
    existing = await existing_partitions(client_options)
    wanted = [
        (topic, partition, offset)
        for topic, partition, offset in dict.fromkeys(positions)
        if TopicPartition(topic, partition) in existing.get(topic, ())
    ]
    if not wanted:
        return []
    consumer = AIOKafkaConsumer(
        **client_options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        # What each partition holds, asked once for all of them (a bulk replay reads a
        # batch of positions over a few partitions).
        partitions = sorted({TopicPartition(topic, partition) for topic, partition, _ in wanted})
        consumer.assign(partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return await _records_at(consumer, wanted, starts, ends)
    finally:
        await consumer.stop()


async def _records_at(
    consumer: AIOKafkaConsumer,
    positions: Sequence[tuple[str, int, int]],
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
) -> list[ConsumerRecord[bytes, bytes]]:
    """The records at ``positions`` that their partitions hold (between ``starts`` and
    ``ends``), in that order, read with ``consumer`` by assigning each partition alone and
    seeking to the offset (its assignment is left to the last one)."""
    found = []
    for topic, partition, offset in positions:
        tp = TopicPartition(topic, partition)
        if not starts.get(tp, 0) <= offset < ends.get(tp, 0):
            continue
        consumer.assign([tp])
        consumer.seek(tp, offset)
        while await consumer.position(tp) <= offset:
            batch = await consumer.getmany(tp, timeout_ms=POLL_TIMEOUT_MS, max_records=1)
            found += [record for record in batch.get(tp, []) if record.offset == offset]
    return found


def _is_indexed_as(record: ConsumerRecord[bytes, bytes], row: IndexedDeadLetter) -> bool:
    """Whether ``row`` was indexed from ``record``: same key, same timestamp (milliseconds)."""
    key = None if record.key is None else record.key.decode(errors="replace")
    return key == row.entity_key and round(row.dead_lettered_at.timestamp() * 1000) == int(
        record.timestamp
    )


def _letter(record: Any, catalogue: Catalogue[Any]) -> DeadLetter:
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
        catalogue=catalogue,
    )
