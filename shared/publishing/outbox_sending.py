"""How the outbox relay hands rows to Kafka without ever reordering a partition, and without
letting one partition hold the others back.

The relay (``shared.publishing.outbox``) reads the oldest unsent rows; this module sends them and
says what became of each. Four rules keep every partition's rows in id order on the topic, even
when Kafka fails part of them, and keep a stalled partition to itself:

One produce batch per partition
    A partition's rows go into one batch of their own (``create_batch`` and ``send_batch``),
    which the broker writes or refuses as a whole. Sent one record at a time, they could land
    in several of aiokafka's batches, and those fail one by one: aiokafka expires the head
    batch of a partition that has no leader after ``request_timeout_ms`` and keeps the next,
    which goes out once a leader is back, ahead of the rows that failed.

At most one batch in flight per partition, and nobody waits for it
    A partition whose batch is not answered yet gets no other: its later rows wait in the
    outbox. Nothing else waits for it: ``send`` hands the free partitions their batches and
    returns, ``settle`` collects whatever has been answered so far, and each answer wakes the
    relay (``on_answer``). A partition without a leader, or one Kafka refuses with
    NotEnoughReplicas, therefore delays only its own rows; the others go on at their usual
    pace. A batch that failed is sent again after a backoff of its own partition, rows first
    that are still the oldest of their partition, since nothing after them was sent.

Refused for good, dead-lettered
    A record larger than the broker takes (``MessageSizeTooLargeError``) would be refused on
    every try and hold its partition up for ever. A single-row batch refused as too large is
    sent to its topic's dead-letter topic with the ``dlq.*`` headers (``shared.publishing.dlq``),
    and the row is marked with the reason; the partition's next rows go on. A batch of several
    rows refused as too large does not say which: the partition then sends that many rows
    one per batch, which finds the culprit (or shows that only the batch was too large).

Sequence numbers given back
    A batch that fails gives its records' sequence numbers back to the idempotent producer
    (``shared.publishing.batch_sending``, shared with the dead-letter queue): aiokafka does not, and
    the partition's next batch would be refused as out of order for as long as the producer
    lives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.structs import RecordMetadata, TopicPartition
from prometheus_client import Histogram

from shared.backoff import backoff_delay
from shared.contracts.topics import Topics
from shared.observability.stages import StageClock
from shared.observability.tracing import TRACEPARENT, OpenSpan, TraceParent, recording, start_span
from shared.publishing.batch_sending import (
    choose_partition,
    partition_for,
    send_alone,
    submit_batch,
)
from shared.publishing.dlq import dead_letter_headers
from shared.storage.db import decode_headers

__all__ = [
    "STALLED_AFTER_S",
    "TOO_LARGE",
    "DeadLetterOutcome",
    "Flight",
    "Handout",
    "PartitionSender",
    "Settled",
]

log = logging.getLogger(__name__)

STALLED_AFTER_S = 1.0
"""A batch not acknowledged after this long is stalled (healthy ones take milliseconds)."""

TOO_LARGE: tuple[type[Exception], ...] = (MessageSizeTooLargeError, RecordListTooLargeError)
"""What the broker answers, on every try, to a record or batch larger than it takes."""


class Handout(NamedTuple):
    """What ``send`` did with the rows it was given."""

    handed: int
    """Rows handed to the producer in new batches."""
    waiting: int
    """Rows neither handed nor already in flight: their partition waits for an answer or a
    backoff, or their batch was full. The relay must read them again later."""


@dataclass(slots=True)
class Flight:
    """One partition's rows, handed to the producer as one batch; ``future`` is its answer."""

    partition: TopicPartition
    rows: list[asyncpg.Record]
    future: asyncio.Future[RecordMetadata]
    sent_at: float = field(default_factory=time.monotonic)
    overdue: bool = False
    """Already reported as not answered within the acknowledgement timeout."""

    @property
    def row_ids(self) -> list[int]:
        return [row["id"] for row in self.rows]


@dataclass(slots=True)
class Settled:
    """What Kafka answered since the last ``settle``."""

    acknowledged: list[int] = field(default_factory=list)
    """Rows Kafka stored: mark them sent."""
    refused: list[tuple[asyncpg.Record, BaseException]] = field(default_factory=list)
    """Rows Kafka refuses for good, alone in their batch: dead-letter them."""
    failed: int = 0
    """Batches that failed: their partitions try again after a backoff."""


@dataclass(frozen=True, slots=True)
class _OutboxRecord:
    """An outbox row seen as the record it was meant to be
    (``shared.publishing.dlq.ReceivedRecord``)."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    offset: int = -1  # never written to its topic


@dataclass(frozen=True, slots=True)
class DeadLetterOutcome:
    """What the relay writes on a refused row: whether it left the outbox, and why."""

    sent: bool
    reason: str


class PartitionSender:
    """Sends outbox rows with the rules of the module docstring; one per relay."""

    def __init__(
        self,
        producer: Any,
        *,
        name: str,
        publish_seconds: Histogram | None = None,
        stages: StageClock | None = None,
        on_answer: Callable[[], None] = lambda: None,
    ) -> None:
        self._producer = producer
        self._name = name
        self._publish_seconds = publish_seconds
        self._stages = stages
        self._on_answer = on_answer
        self._in_flight: dict[TopicPartition, Flight] = {}
        # Partitions whose last batch failed: how many times in a row, and when to try again.
        self._failures: dict[TopicPartition, int] = {}
        self._retry_at: dict[TopicPartition, float] = {}
        # Partitions sending one row per batch, and for how many more rows (a batch of that
        # many rows was refused as too large).
        self._one_at_a_time: dict[TopicPartition, int] = {}

    def forget(self) -> None:
        """Drop what is in flight (leadership lost: the next leader sends those rows again)."""
        self._in_flight.clear()
        self._failures.clear()
        self._retry_at.clear()
        self._one_at_a_time.clear()

    @property
    def in_flight(self) -> int:
        """Batches handed to the producer and not settled yet."""
        return len(self._in_flight)

    def stalled(self) -> bool:
        """Whether a partition waits longer than a healthy acknowledgement takes: a batch in
        flight for more than ``STALLED_AFTER_S``, or a backoff after a failure. Only then is
        it worth reading past the first page of unsent rows for the other partitions'."""
        now = time.monotonic()
        if any(at > now for at in self._retry_at.values()):
            return True
        return any(now - flight.sent_at > STALLED_AFTER_S for flight in self._in_flight.values())

    def next_retry_in(self) -> float | None:
        """Seconds until the soonest partition in backoff may send again (None: none waits)."""
        # Only backoffs still running: one that ended is a free partition, and waking for it
        # again and again (its rows beyond what a round reads) would spin.
        now = time.monotonic()
        running = [at for at in self._retry_at.values() if at > now]
        return min(running) - now if running else None

    async def send(self, rows: Sequence[asyncpg.Record]) -> Handout:
        """Hand each free partition its oldest of ``rows`` (oldest first) as one batch; say
        how many rows were handed, and how many wait. Rows of a partition with a batch in
        flight, or in backoff after a failure, are left for later; so are rows that did not
        fit their batch."""
        now = time.monotonic()
        handed = waiting = 0
        for partition, partition_rows in (await self._by_partition(rows)).items():
            flight = self._in_flight.get(partition)
            if flight is not None or self._retry_at.get(partition, 0.0) > now:
                flying = set(flight.row_ids) if flight is not None else set()
                waiting += sum(row["id"] not in flying for row in partition_rows)
                continue
            self._retry_at.pop(partition, None)
            flight = await self._fly(partition, partition_rows)
            taken = len(flight.rows) if flight is not None else 0
            handed += taken
            waiting += len(partition_rows) - taken
        return Handout(handed, waiting)

    def settle(self) -> Settled:
        """Collect the batches Kafka has answered; the pending ones stay in flight."""
        settled = Settled()
        for partition, flight in list(self._in_flight.items()):
            if flight.future.done():
                del self._in_flight[partition]
                self._settle(flight, settled)
        return settled

    def overdue(self, ack_timeout_s: float) -> int:
        """Report (once each) the batches not answered within ``ack_timeout_s``: their
        partitions wait, the others do not. Returns how many were newly overdue."""
        now = time.monotonic()
        late = [
            flight
            for flight in self._in_flight.values()
            if not flight.overdue and now - flight.sent_at > ack_timeout_s
        ]
        for flight in late:
            flight.overdue = True
            log.warning(
                "%s: Kafka has not acknowledged outbox rows %d-%d of %s within %.0f s: that "
                "partition's later rows wait, the other partitions go on",
                self._name,
                flight.row_ids[0],
                flight.row_ids[-1],
                flight.partition,
                ack_timeout_s,
            )
        return len(late)

    async def _by_partition(
        self, rows: Sequence[asyncpg.Record]
    ) -> dict[TopicPartition, list[asyncpg.Record]]:
        partitions: dict[str, list[int]] = {}
        grouped: dict[TopicPartition, list[asyncpg.Record]] = {}
        for row in rows:
            topic: str = row["topic"]
            if topic not in partitions:
                partitions[topic] = sorted(await self._producer.partitions_for(topic))
            partition = choose_partition(topic, row["key"], partitions[topic])
            grouped.setdefault(partition, []).append(row)
        return grouped

    async def _fly(self, partition: TopicPartition, rows: list[asyncpg.Record]) -> Flight | None:
        """A new batch of the partition's oldest rows, in flight; None when the producer
        refused to take it (the partition backs off)."""
        builder = self._producer.create_batch()
        limit = 1 if partition in self._one_at_a_time else len(rows)
        taken: list[asyncpg.Record] = []
        stamps: list[int] = []
        spans: list[OpenSpan] = []
        for row in rows[:limit]:
            headers = decode_headers(json.loads(row["headers"]))
            span = _publish_span(row["topic"], row["traceparent"])
            traceparent = span.context if span is not None else row["traceparent"]
            if traceparent is not None:
                headers.append((TRACEPARENT, str(traceparent).encode()))
            stamp = _written_at_ms(row)
            if builder.append(key=row["key"], value=row["value"], timestamp=stamp, headers=headers):
                taken.append(row)
                stamps.append(stamp)
                if span is not None:
                    spans.append(span)
            else:
                if span is not None:
                    span.end()
                break  # the batch is full: the rest go in a later batch
        sent = time.perf_counter()
        try:
            future = await submit_batch(
                self._producer, builder, partition, len(taken), writer=self._name
            )
        except Exception as error:  # any refusal ends this partition's turn the same way
            log.warning("%s: Kafka refused a batch for %s: %r", self._name, partition, error)
            for span in spans:
                span.end(error)
            self._back_off(partition)
            return None
        if self._stages is not None:
            self._stages.since((partition.topic, "sent"), stamps)
        future.add_done_callback(self._acknowledgement(sent, spans, partition.topic, stamps))
        flight = Flight(partition, taken, future)
        self._in_flight[partition] = flight
        return flight

    def _acknowledgement(
        self, sent: float, spans: Sequence[OpenSpan], topic: str, stamps: list[int]
    ) -> Callable[[asyncio.Future[RecordMetadata]], None]:
        def done(future: asyncio.Future[RecordMetadata]) -> None:
            error = None if future.cancelled() else future.exception()
            if not future.cancelled() and error is None and self._publish_seconds is not None:
                took = time.perf_counter() - sent
                for _ in stamps:  # one observation per row: the batch's rows waited alike
                    self._publish_seconds.observe(took)
            if not future.cancelled() and error is None and self._stages is not None:
                self._stages.since((topic, "acknowledged"), stamps)
            for span in spans:
                span.end(error)
            self._on_answer()

        return done

    def _back_off(self, partition: TopicPartition) -> None:
        failures = self._failures.get(partition, 0) + 1
        self._failures[partition] = failures
        delay = backoff_delay(min(failures, 10), base_ms=200, max_ms=10_000)
        self._retry_at[partition] = time.monotonic() + delay

    def _settle(self, flight: Flight, settled: Settled) -> None:
        future = flight.future
        error = BaseException("cancelled") if future.cancelled() else future.exception()
        if error is None:
            settled.acknowledged += flight.row_ids
            self._failures.pop(flight.partition, None)
            self._count_down(flight.partition, len(flight.rows))
        elif isinstance(error, TOO_LARGE) and len(flight.rows) == 1:
            settled.refused.append((flight.rows[0], error))
            self._count_down(flight.partition, 1)
        elif isinstance(error, TOO_LARGE):
            log.warning(
                "%s: Kafka refused a batch of %d rows for %s as too large (%r): sending them "
                "one per batch",
                self._name,
                len(flight.rows),
                flight.partition,
                error,
            )
            self._one_at_a_time[flight.partition] = len(flight.rows)
        else:
            log.warning(
                "%s: Kafka failed outbox rows %d-%d of %s: %r",
                self._name,
                flight.row_ids[0],
                flight.row_ids[-1],
                flight.partition,
                error,
            )
            settled.failed += 1
            self._back_off(flight.partition)

    def _count_down(self, partition: TopicPartition, rows: int) -> None:
        left = self._one_at_a_time.get(partition)
        if left is None:
            return
        if left <= rows:
            del self._one_at_a_time[partition]
        else:
            self._one_at_a_time[partition] = left - rows

    async def dead_letter(
        self, row: asyncpg.Record, error: BaseException, timeout_s: float
    ) -> DeadLetterOutcome | None:
        """Send a refused row to its topic's dead-letter topic; None if Kafka did not answer
        within ``timeout_s`` (try again in a later round)."""
        topic: str = row["topic"]
        original = await partition_for(self._producer, topic, row["key"])
        record = _OutboxRecord(
            topic=topic,
            partition=original.partition,
            key=row["key"],
            value=row["value"],
            headers=decode_headers(json.loads(row["headers"])),
        )
        headers = dead_letter_headers(
            record,
            group=f"outbox relay {self._name}",
            error=error,
            attempts=1,
            failed_at=datetime.now(UTC),
        )
        dead_letters = Topics.dlq(topic)
        reason = f"refused by Kafka: {type(error).__name__}: {error}"
        try:
            async with asyncio.timeout(timeout_s):
                sent = await send_alone(
                    self._producer,
                    dead_letters,
                    key=row["key"],
                    value=row["value"],
                    headers=headers,
                    writer=self._name,
                )
                # Shielded: a dead letter not acknowledged in time stays queued, not cancelled.
                await asyncio.shield(sent)
        except TOO_LARGE as refused:
            log.error(
                "%s: outbox row %d is too large for %s and for %s: it stays in the outbox",
                self._name,
                row["id"],
                topic,
                dead_letters,
            )
            return DeadLetterOutcome(
                sent=False, reason=f"{reason}; {dead_letters} refused it too ({refused!r})"
            )
        except Exception as failure:
            log.warning(
                "%s: dead-lettering outbox row %d to %s failed (%r), trying again later",
                self._name,
                row["id"],
                dead_letters,
                failure,
            )
            self._back_off(original)  # the row is sent, refused and dead-lettered again later
            return None
        log.error(
            "%s: outbox row %d was refused by %s (%s): dead-lettered to %s",
            self._name,
            row["id"],
            topic,
            error,
            dead_letters,
        )
        return DeadLetterOutcome(sent=True, reason=f"{reason}; dead-lettered to {dead_letters}")


def _written_at_ms(row: asyncpg.Record) -> int:
    """When ``row`` was written (its ``created_at``), in milliseconds since the epoch: the
    Kafka timestamp of its record, from which every stage of its hop is timed
    (``shared.observability.stages``)."""
    written: datetime = row["created_at"]
    return round(written.timestamp() * 1000)


def _publish_span(topic: str, traceparent: str | None) -> OpenSpan | None:
    """The producer span of publishing a row, when spans are recorded."""
    if not recording():
        return None
    attributes = {"messaging.system": "kafka", "messaging.destination.name": topic}
    return start_span(f"{topic} publish", TraceParent.parse(traceparent), "producer", attributes)
