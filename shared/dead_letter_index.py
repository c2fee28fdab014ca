"""What the dead-letter topics hold, read incrementally and kept in memory.

The order service answers "which sagas are stuck" and the explorer shows the dead letters;
both need to know which orders have a record in a ``-dlq`` topic (every record is keyed by
its order id). ``DeadLetterIndex.refresh`` reads each dead-letter partition from where the
last refresh stopped up to its end as of now, with no consumer group (nothing is committed,
nobody else's position moves), so a refresh costs one connection and whatever is new.

Memory is bounded: every record is counted and its order remembered, but only the newest
``keep_per_topic`` records of each topic are kept whole (headers and value) for display.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from shared.dlq import DLQ_HEADER_PREFIX
from shared.errors import NotAnEvent
from shared.events import Event, decode
from shared.topics import existing_partitions

__all__ = ["DeadLetter", "DeadLetterIndex"]

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

    @property
    def order_id(self) -> str | None:
        """The record's key: the order id of the event (None for a record without one)."""
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

    def event(self) -> Event | str:
        """The value as an event, or why it is not one (poison bytes are dead-lettered too)."""
        try:
            return decode(self.value)
        except NotAnEvent as error:
            return str(error)


class DeadLetterIndex:
    """The dead letters of ``topics``, refreshed on demand (``refresh``)."""

    def __init__(
        self,
        client_options: Mapping[str, Any],
        topics: Sequence[str],
        *,
        keep_per_topic: int = 200,
        min_interval_s: float = 1.0,
    ) -> None:
        self._options = dict(client_options)
        self._topics = list(topics)
        self._keep = keep_per_topic
        self._min_interval_s = min_interval_s
        self._next: dict[TopicPartition, int] = {}
        self._counts: dict[str, int] = dict.fromkeys(self._topics, 0)
        self._kept: dict[str, deque[DeadLetter]] = {
            topic: deque(maxlen=keep_per_topic) for topic in self._topics
        }
        self._orders: defaultdict[str, set[str]] = defaultdict(set)
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

    def topics_by_order(self) -> dict[str, set[str]]:
        """For each order with dead letters, the topics that hold them."""
        return {order_id: set(topics) for order_id, topics in self._orders.items()}

    def of_order(self, order_id: str) -> list[DeadLetter]:
        """The kept dead letters of ``order_id``, oldest first."""
        found = [
            letter for kept in self._kept.values() for letter in kept if letter.order_id == order_id
        ]
        return sorted(found, key=lambda letter: letter.timestamp)

    def find(self, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """The kept dead letter at ``topic[partition]@offset``."""
        for letter in self._kept.get(topic, ()):
            if (letter.partition, letter.offset) == (partition, offset):
                return letter
        return None

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
            behind = []
            for tp in partitions:
                start = max(starts[tp], self._next.get(tp, 0))  # retention may have moved it
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    behind.append(tp)
            while behind:
                batches = await consumer.getmany(*behind, timeout_ms=POLL_TIMEOUT_MS)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < ends[tp]:
                            self._add(record)
                            # Per record: a read cut short by the timeout resumes after
                            # what it counted, never counting a record twice.
                            self._next[tp] = record.offset + 1
                behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
        finally:
            await consumer.stop()

    def _add(self, record: Any) -> None:
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            key=record.key,
            value=record.value,
            headers=tuple(record.headers),
        )
        self._counts[letter.topic] = self._counts.get(letter.topic, 0) + 1
        self._kept.setdefault(letter.topic, deque(maxlen=self._keep)).append(letter)
        if letter.order_id is not None:
            self._orders[letter.order_id].add(letter.topic)
