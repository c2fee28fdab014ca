"""How the outbox relay hands a round's rows to Kafka without ever reordering a partition.

The relay (``shared.outbox``) reads the oldest unsent rows; this module sends them and says
what became of each. Three rules keep every partition's rows in id order on the topic, even
when Kafka fails part of a round:

One produce batch per partition
    A partition's rows of a round go into one batch of their own (``create_batch`` and
    ``send_batch``), which the broker writes or refuses as a whole. Sent one record at a time,
    they could land in several of aiokafka's batches, and those fail one by one: aiokafka
    expires the head batch of a partition that has no leader after ``request_timeout_ms``
    and keeps the next, which goes out once a leader is back, ahead of the rows that failed.

At most one batch in flight per partition
    A partition whose batch is not acknowledged yet gets no other: its later rows wait in the
    outbox. A batch that failed is sent again, rows first that are still the oldest of their
    partition, since nothing after them was sent.

Refused for good, dead-lettered
    A record larger than the broker takes (``MessageSizeTooLargeError``) would be refused on
    every try and hold its partition up for ever. A single-row batch refused as too large is
    sent to its topic's dead-letter topic with the ``dlq.*`` headers (``shared.dlq``), and
    the row is marked with the reason; the partition's next rows go on. A batch of several
    rows refused as too large does not say which: the partition then sends that many rows
    one per batch, which finds the culprit (or shows that only the batch was too large).

A batch that fails gives its records' sequence numbers back to the idempotent producer
(``_SequenceNumbers``): aiokafka does not, and the partition's next batch would be refused
as out of order for as long as the producer lives.

A row's partition is computed as the producer would (murmur2 of the key over the topic's
partitions), so that the batch goes where ``send`` would have put the record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata, TopicPartition
from prometheus_client import Histogram

from shared.db import decode_headers
from shared.dlq import dead_letter_headers
from shared.topics import Topics
from shared.tracing import TRACEPARENT, OpenSpan, TraceParent, recording, start_span

__all__ = ["TOO_LARGE", "DeadLetterOutcome", "Flight", "PartitionSender", "RoundResult"]

log = logging.getLogger(__name__)

TOO_LARGE: tuple[type[Exception], ...] = (MessageSizeTooLargeError, RecordListTooLargeError)
"""What the broker answers, on every try, to a record or batch larger than it takes."""


@dataclass(slots=True)
class Flight:
    """One partition's rows, handed to the producer as one batch; ``future`` is its answer."""

    partition: TopicPartition
    rows: list[asyncpg.Record]
    future: asyncio.Future[RecordMetadata]

    @property
    def row_ids(self) -> list[int]:
        return [row["id"] for row in self.rows]


@dataclass(slots=True)
class RoundResult:
    """What became of a round's rows."""

    acknowledged: list[int] = field(default_factory=list)
    """Rows Kafka stored: mark them sent."""
    refused: list[tuple[asyncpg.Record, BaseException]] = field(default_factory=list)
    """Rows Kafka refuses for good, alone in their batch: dead-letter them."""
    waiting: int = 0
    """Rows not sent this round because an earlier row of their partition is in flight, or
    failed, or their partition's batch was full: they go in a later round."""
    failed: bool = False
    """Some batch failed or was not acknowledged in time: try again after a backoff."""


@dataclass(frozen=True, slots=True)
class _OutboxRecord:
    """An outbox row seen as the record it was meant to be (``shared.dlq.ReceivedRecord``)."""

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
    """Sends rounds of outbox rows with the rules of the module docstring; one per relay."""

    def __init__(
        self, producer: Any, *, name: str, publish_seconds: Histogram | None = None
    ) -> None:
        self._producer = producer
        self._name = name
        self._publish_seconds = publish_seconds
        self._partitioner = DefaultPartitioner()
        self._in_flight: dict[TopicPartition, Flight] = {}
        # Partitions sending one row per batch, and for how many more rows (a batch of that
        # many rows was refused as too large).
        self._one_at_a_time: dict[TopicPartition, int] = {}

    def forget(self) -> None:
        """Drop what is in flight (leadership lost: the next leader sends those rows again)."""
        self._in_flight.clear()
        self._one_at_a_time.clear()

    async def send_round(self, rows: Sequence[asyncpg.Record], ack_timeout_s: float) -> RoundResult:
        """Send ``rows`` (oldest first), wait up to ``ack_timeout_s`` for Kafka, say what became
        of them."""
        result = RoundResult()
        flights: list[Flight] = []
        for partition, partition_rows in (await self._by_partition(rows)).items():
            flight = await self._flight_for(partition, partition_rows)
            if flight is None:
                result.waiting += len(partition_rows)
                result.failed = True
                continue
            flights.append(flight)
            result.waiting += len(partition_rows) - len(flight.rows)
        if flights:
            await self._wait(flights, ack_timeout_s)
        for flight in flights:
            self._settle(flight, result)
        return result

    async def _by_partition(
        self, rows: Sequence[asyncpg.Record]
    ) -> dict[TopicPartition, list[asyncpg.Record]]:
        partitions: dict[str, list[int]] = {}
        grouped: dict[TopicPartition, list[asyncpg.Record]] = {}
        for row in rows:
            topic: str = row["topic"]
            if topic not in partitions:
                partitions[topic] = sorted(await self._producer.partitions_for(topic))
            every = partitions[topic]
            partition = TopicPartition(topic, self._partitioner(row["key"], every, every))
            grouped.setdefault(partition, []).append(row)
        return grouped

    async def _flight_for(
        self, partition: TopicPartition, rows: list[asyncpg.Record]
    ) -> Flight | None:
        """The partition's batch this round: the one still in flight, or a new one of its
        oldest rows; None when the producer refused to take one."""
        earlier = self._in_flight.get(partition)
        if earlier is not None and not _failed(earlier.future):
            return earlier  # pending, or acknowledged after the last round stopped waiting
        builder = self._producer.create_batch()
        limit = 1 if partition in self._one_at_a_time else len(rows)
        taken: list[asyncpg.Record] = []
        spans: list[OpenSpan] = []
        for row in rows[:limit]:
            headers = decode_headers(json.loads(row["headers"]))
            span = _publish_span(row["topic"], row["traceparent"])
            traceparent = span.context if span is not None else row["traceparent"]
            if traceparent is not None:
                headers.append((TRACEPARENT, str(traceparent).encode()))
            if builder.append(key=row["key"], value=row["value"], timestamp=None, headers=headers):
                taken.append(row)
                if span is not None:
                    spans.append(span)
            else:
                if span is not None:
                    span.end()
                break  # the batch is full: the rest go in a later round
        sent = time.perf_counter()
        try:
            future = await self._submit(builder, partition, len(taken))
        except Exception as error:  # any refusal ends this partition's round the same way
            log.warning("%s: Kafka refused a batch for %s: %r", self._name, partition, error)
            for span in spans:
                span.end(error)
            return None
        future.add_done_callback(self._acknowledgement(sent, spans, len(taken)))
        flight = Flight(partition, taken, future)
        self._in_flight[partition] = flight
        return flight

    def _acknowledgement(
        self, sent: float, spans: Sequence[OpenSpan], rows: int
    ) -> Callable[[asyncio.Future[RecordMetadata]], None]:
        def done(future: asyncio.Future[RecordMetadata]) -> None:
            error = None if future.cancelled() else future.exception()
            if not future.cancelled() and error is None and self._publish_seconds is not None:
                took = time.perf_counter() - sent
                for _ in range(rows):  # one observation per row: the batch's rows waited alike
                    self._publish_seconds.observe(took)
            for span in spans:
                span.end(error)

        return done

    async def _submit(
        self, builder: Any, partition: TopicPartition, records: int
    ) -> asyncio.Future[RecordMetadata]:
        """Queue a batch; should it fail, give its sequence numbers back (see below)."""
        # Closed, so that no send() of the same partition can slip a record into it.
        builder.close()
        numbers = _SequenceNumbers.of(self._producer, partition)
        future: asyncio.Future[RecordMetadata] = await self._producer.send_batch(
            builder, partition.topic, partition=partition.partition
        )

        def on_done(done: asyncio.Future[RecordMetadata]) -> None:
            if done.cancelled() or done.exception() is None:
                return
            if numbers is not None and not numbers.give_back(records):
                log.error(
                    "%s: a batch for %s failed, and its sequence numbers could not be given "
                    "back (the partition had another writer meanwhile): Kafka may refuse this "
                    "partition's next batches as out of order until the producer restarts",
                    self._name,
                    partition,
                )

        future.add_done_callback(on_done)
        return future

    async def _wait(self, flights: Sequence[Flight], timeout_s: float) -> None:
        # asyncio.wait, not wait_for(gather): on timeout the batches must stay in the producer.
        futures = {flight.future for flight in flights}
        _, pending = await asyncio.wait(futures, timeout=timeout_s)
        if pending:
            log.warning(
                "%s: Kafka did not acknowledge %d of %d batches within %.0f s",
                self._name,
                len(pending),
                len(futures),
                timeout_s,
            )

    def _settle(self, flight: Flight, result: RoundResult) -> None:
        future = flight.future
        if not future.done():
            result.waiting += len(flight.rows)
            result.failed = True  # stays in flight: its partition waits for it
            return
        del self._in_flight[flight.partition]
        if future.cancelled():
            result.waiting += len(flight.rows)
            result.failed = True
            return
        error = future.exception()
        if error is None:
            result.acknowledged += flight.row_ids
            self._count_down(flight.partition, len(flight.rows))
        elif isinstance(error, TOO_LARGE) and len(flight.rows) == 1:
            result.refused.append((flight.rows[0], error))
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
            result.waiting += len(flight.rows)
        else:
            log.warning(
                "%s: Kafka failed outbox rows %d-%d of %s: %r",
                self._name,
                flight.row_ids[0],
                flight.row_ids[-1],
                flight.partition,
                error,
            )
            result.waiting += len(flight.rows)
            result.failed = True

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
        (try again in a later round)."""
        topic: str = row["topic"]
        every = sorted(await self._producer.partitions_for(topic))
        record = _OutboxRecord(
            topic=topic,
            partition=self._partitioner(row["key"], every, every),
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
        builder = self._producer.create_batch()
        builder.append(key=row["key"], value=row["value"], timestamp=None, headers=headers)
        partitions = sorted(await self._producer.partitions_for(dead_letters))
        target = TopicPartition(dead_letters, self._partitioner(row["key"], partitions, partitions))
        try:
            sent = await self._submit(builder, target, 1)
            # Shielded: a dead letter not acknowledged in time stays queued, not cancelled.
            await asyncio.wait_for(asyncio.shield(sent), timeout_s)
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


@dataclass(slots=True)
class _SequenceNumbers:
    """The idempotent producer's record numbering of one partition, around one batch.

    aiokafka numbers a batch's records as the batch leaves its queue (also when it leaves
    because it expired waiting for a leader) and, unlike Kafka's Java producer, does not
    take the numbers back when the batch then fails: the broker, which wrote nothing, would
    refuse every later batch of the partition as ``OutOfOrderSequenceNumber``. So when a
    batch fails, its numbers are given back, but only if the counter moved by exactly that
    batch since it was queued: the relay is its partitions' only writer and has one batch in
    flight per partition, so the check holds unless someone else wrote meanwhile. Reaches
    into aiokafka (0.14) internals: there is no public way to do this.
    """

    manager: Any
    partition: TopicPartition
    before: int

    @classmethod
    def of(cls, producer: Any, partition: TopicPartition) -> _SequenceNumbers | None:
        manager = getattr(producer, "_txn_manager", None)
        if manager is None:  # not idempotent: no numbers to give back
            return None
        return cls(manager, partition, manager.sequence_number(partition))

    def give_back(self, records: int) -> bool:
        """True when the numbers are back (or were never taken); False when unsure."""
        now = self.manager.sequence_number(self.partition)
        if now == self.before:
            return True  # never numbered: failed before it left the queue
        if now != self.before + records:
            return False
        self.manager.increment_sequence_number(self.partition, -records)
        return True


def _failed(future: asyncio.Future[RecordMetadata]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _publish_span(topic: str, traceparent: str | None) -> OpenSpan | None:
    """The producer span of publishing a row, when spans are recorded."""
    if not recording():
        return None
    attributes = {"messaging.system": "kafka", "messaging.destination.name": topic}
    return start_span(f"{topic} publish", TraceParent.parse(traceparent), "producer", attributes)
