"""What happens to one consumed record: decode, deduplicate, handle, retry, dead-letter.

The steps, in order (``shared.consuming.batches`` takes runs of records through the same ones):

0. a dead letter replayed for another group (its ``sagakit.replay.group`` header,
   ``shared.publishing.replay_target``) is done at once: not decoded, handled or dead-lettered;
1. decode; bytes that are not an event of the topic's type go to the DLQ at once;
2. skip the event if Redis says this group processed it already (fast path);
3. apply the injected ``delay`` / ``transient`` / ``permanent`` faults, if a registry is given;
4. in one unit of work, behind the group's lock (``shared.consuming.group_lock``): claim the
   event in the inbox (already claimed: a duplicate, skip), run the route's handlers, commit; then
   tell Redis;
5. an injected ``crash`` exits the process here: after the database commit, before the
   offset commit, so the record is redelivered and must be skipped.

How failures are treated (``classify``):

- ``PermanentError`` (``NotAnEvent`` included): dead-lettered at once (attempts: 1);
- data the database refuses (SQLSTATE class 22 data exception, 23 integrity constraint, 54
  program limit exceeded: a numeric overflow, a value too long for its column or index): as
  ``PermanentError``, dead-lettered at once, with ``SQLSTATE <code>: <the server's words>`` in
  ``dlq.error.message``: the same record fails the same way however often it is tried;
- ``TransientError``: retried with backoff, dead-lettered after ``retry_attempts`` in all;
- any other exception (a bug): as ``TransientError``, a few tries and then the DLQ, with its
  class name in ``dlq.error.type``;
- infrastructure unavailable (PostgreSQL connection refused or lost, SQLSTATE class 08
  connection exception, 53 insufficient resources, 57P01-57P03 shutdown or cannot connect
  now, and the other server errors sqlalchemy calls ``OperationalError``; ``OSError``,
  timeouts, no pooled connection free within the pool's timeout), and a race lost to
  another transaction (40001 serialization failure, 40P01 deadlock: never the record's
  fault): retried with backoff *without limit*.

The last row is a choice: the record is fine, our own database is not, and dead-lettering
every record that arrives during a database outage would lose events the contract says are
never lost (docs/contract.md, section 7). The partition waits instead (the consumer keeps
polling and stays in the group) and resumes where it stopped when the database is back.
The data errors are told by their SQLSTATE before the exception's class is looked at:
sqlalchemy's asyncpg dialect wraps a program limit (a value too long for an index) in
``OperationalError``, the class of a lost connection, and a record refused for its data that
was taken for an outage stopped its partition for good.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, NoReturn

from aiokafka.structs import ConsumerRecord
from prometheus_client import Histogram
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.backoff import backoff_delay
from shared.consuming.faults import FaultKind, FaultRegistry, inject_before_handler
from shared.consuming.group_lock import GroupLock
from shared.consuming.inbox import Deduplicator, Inbox
from shared.consuming.subscriptions import Route
from shared.contracts.errors import PermanentError, TransientError
from shared.contracts.events import Event, decode
from shared.observability.logs import about_record
from shared.observability.metrics import histogram
from shared.observability.stages import StageClock
from shared.observability.tracing import OpenSpan, handling, header_of, recording, start_span
from shared.publishing.dlq import DeadLetterQueue
from shared.publishing.replay_target import REPLAY_GROUP_HEADER, replay_header
from shared.storage.db import ReadFrom, UnitOfWork

__all__ = [
    "CRASH_EXIT_CODE",
    "OUTCOMES",
    "ConsumerStats",
    "Counted",
    "DataRefused",
    "Failure",
    "MisroutedEvent",
    "Outcome",
    "RecordProcessor",
    "RetryPolicy",
    "classify",
    "consumer_span",
    "consumer_stages",
    "dead_letter_reason",
    "handler_durations",
]

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70
"""The exit status of a process ended by an injected ``crash`` fault (EX_SOFTWARE)."""

# SQLSTATE classes that mean "the server is not there for us right now": 08 connection
# exception, 53 insufficient resources, 57P01-57P03 shutdown / cannot connect now.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
# "This record's data cannot be stored": 22 data exception, 23 integrity constraint
# violation, 54 program limit exceeded. Tried again, the same record fails the same way.
_REFUSED_DATA_SQLSTATES = ("22", "23", "54")
# Lost a race with another transaction (40001 serialization failure, 40P01 deadlock): the
# next attempt usually wins it.
_RACE_LOST_SQLSTATES = ("40001", "40P01")


class MisroutedEvent(PermanentError):
    """A valid event on a topic that carries another event type: a producer's bug."""


class DataRefused(PermanentError):
    """The database refused a record's data (SQLSTATE class 22, 23 or 54): see ``classify``."""


class Failure(enum.Enum):
    """How the runner treats an exception raised while handling a record."""

    permanent = "permanent"
    transient = "transient"
    unavailable = "unavailable"


def _sqlstate(error: BaseException) -> str:
    # SQLAlchemy wraps the driver's error (``orig``); a connection the pool opens can fail
    # with asyncpg's own (CannotConnectNowError while a restarted server recovers).
    origin = error.orig if isinstance(error, DBAPIError) else error
    state = getattr(origin, "sqlstate", None) or getattr(origin, "pgcode", None)
    return state if isinstance(state, str) else ""


def classify(error: BaseException) -> Failure:
    """The treatment of ``error``: see the module's table."""
    if isinstance(error, PermanentError):
        return Failure.permanent
    if isinstance(error, TransientError):
        return Failure.transient
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return Failure.unavailable
    # Before the exception's class: sqlalchemy's asyncpg dialect wraps a program limit in
    # OperationalError, the class of a lost connection.
    state = _sqlstate(error)
    if state.startswith(_REFUSED_DATA_SQLSTATES):
        return Failure.permanent
    if state in _RACE_LOST_SQLSTATES:
        # Never the record's fault, and never the same race twice in a row for ever: tried
        # again without limit, so that contention cannot dead-letter a good event.
        return Failure.unavailable
    # PoolTimeout: every pooled connection stayed busy for ``pool_timeout``; the database is
    # saturated, not the record wrong, so it must wait like an outage, never dead-letter.
    if isinstance(error, OSError | TimeoutError | PoolTimeout | InterfaceError | OperationalError):
        return Failure.unavailable
    if state.startswith(_UNAVAILABLE_SQLSTATES):
        return Failure.unavailable
    return Failure.transient


def dead_letter_reason(error: BaseException) -> BaseException:
    """What a dead letter says of ``error``: its SQLSTATE and the server's words when the
    database refused the record's data (``DataRefused``), ``error`` itself otherwise."""
    state = _sqlstate(error)
    if isinstance(error, PermanentError) or not state.startswith(_REFUSED_DATA_SQLSTATES):
        return error
    origin = error.orig if isinstance(error, DBAPIError) else error
    # sqlalchemy's asyncpg dialect chains asyncpg's own error, whose text is the server's
    # message alone (the wrapper's adds the statement and its parameters).
    server = origin.__cause__ if origin is not None and origin.__cause__ is not None else origin
    detail = getattr(server, "detail", None)
    words = str(server) + (f" ({detail})" if detail else "")
    return DataRefused(f"SQLSTATE {state}: {words}")


class Outcome(enum.Enum):
    """What became of a record."""

    processed = "processed"
    duplicate = "duplicate"
    dead_lettered = "dead_lettered"
    abandoned = "abandoned"
    """Given up between two attempts because the partition is being released; not done."""


Counted = Literal["ok", "retried", "dead_lettered", "duplicate", "replay_skipped"]
"""What became of a consumed record, as ``/metrics`` counts it: handled at the first attempt,
handled after retries, dead-lettered, skipped as already processed, or skipped as a replayed
dead letter of another group (``shared.publishing.replay_target``)."""

OUTCOMES: Final[tuple[Counted, ...]] = (
    "ok",
    "retried",
    "dead_lettered",
    "duplicate",
    "replay_skipped",
)


@dataclass
class ConsumerStats:
    """Counters of one consumer group in this process, for ``/metrics``.

    Plain ints, added to once per record or per run: ``shared.consuming.consumer`` turns them into
    metric families when ``/metrics`` is scraped.
    """

    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    replay_skipped: int = 0
    """Replayed dead letters of another group, committed past without being handled."""
    commit_failures: int = 0
    rebalances: int = 0
    batches: int = 0
    """Runs of several records committed in one transaction (``shared.consuming.batches``)."""
    batched: int = 0
    """Records handled in those runs."""
    batch_fallbacks: int = 0
    """Runs that failed together and were taken one record at a time."""
    by_topic: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per topic, records by outcome (``OUTCOMES``) and ``retries``: attempts retried."""

    def count(self, topic: str, outcome: Counted, records: int = 1) -> None:
        """``records`` of ``topic`` ended as ``outcome``."""
        self._of(topic)[outcome] += records
        if outcome == "duplicate":
            self.duplicates += records
        elif outcome == "dead_lettered":
            self.dead_lettered += records
        elif outcome == "replay_skipped":
            self.replay_skipped += records
        else:
            self.processed += records

    def count_retry(self, topic: str) -> None:
        """An attempt at a record of ``topic`` failed and will be tried again."""
        self._of(topic)["retries"] += 1
        self.retried += 1

    def _of(self, topic: str) -> dict[str, int]:
        counts = self.by_topic.get(topic)
        if counts is None:  # every outcome from zero, so that a rate() sees the first one
            counts = self.by_topic[topic] = dict.fromkeys((*OUTCOMES, "retries"), 0)
        return counts


def consumer_stages() -> StageClock:
    """When a consumer group's records reached each stage of their hop, from the moment
    their outbox rows were written (``shared.observability.stages``)."""
    return StageClock(
        "sagakit_consumer_stage_seconds",
        "Time from writing an outbox row (its record's Kafka timestamp) to a stage of the "
        "group that consumes it: fetched, begun (its transaction), locked (the group's lock "
        "taken), committed, offset_committed",
        ("topic", "group", "stage"),
    )


def handler_durations() -> Histogram:
    """The handler duration histogram a consumer group's processors share."""
    return histogram(
        "sagakit_handler_duration_seconds",
        "Time the handlers of one event type took in one transaction (one or more events)",
        ("group", "event_type"),
    )


def consumer_span(record: ConsumerRecord[bytes, bytes], group: str) -> OpenSpan:
    """The span of handling ``record``: a child of the span its ``traceparent`` names."""
    parent = header_of(record.headers)
    if not recording():  # ids only: no name or attributes to build for every record
        return start_span("", parent, "consumer")
    return start_span(
        f"{record.topic} process",
        parent,
        "consumer",
        {
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": group,
        },
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing record is tried again."""

    attempts: int = 3
    base_delay_ms: int = 100
    max_delay_ms: int = 5000

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        # Capped so that an unbounded retry of an unavailable database cannot overflow.
        return backoff_delay(min(retry, 30), base_ms=self.base_delay_ms, max_ms=self.max_delay_ms)


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        return False
    return True


class RecordProcessor:
    """Takes one record of a consumer group through every step, retries included.

    Never raises for a record's failure (it ends dead-lettered or, when ``stopping`` is set
    during a backoff, abandoned); cancellation is the only way out mid-record.
    """

    def __init__(
        self,
        *,
        group: str,
        routes: Mapping[str, Route],
        units: Callable[[], UnitOfWork],
        dead_letters: DeadLetterQueue,
        retry: RetryPolicy,
        stats: ConsumerStats,
        inbox: Inbox,
        dedup: Deduplicator | None = None,
        faults: FaultRegistry | None = None,
        durations: Histogram | None = None,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self._group = group
        self._lock = GroupLock(group)
        self._durations = durations or handler_durations()
        self._routes = routes
        self._units = units
        self._dead_letters = dead_letters
        self._retry = retry
        self._stats = stats
        self._inbox = inbox
        self._dedup = dedup
        self._faults = faults
        self._exit_process = exit_process

    async def process(
        self, record: ConsumerRecord[bytes, bytes], stopping: asyncio.Event
    ) -> Outcome:
        """Take ``record`` as far as it goes; see the module docstring for the steps."""
        if self.replayed_for_another_group(record):
            return Outcome.processed
        try:
            event, route = self.decode(record)
        except PermanentError as error:
            with about_record(record):
                return await self.dead_letter(record, None, error, attempts=1)
        return await self.process_event(record, event, route, stopping)

    async def process_event(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: Event,
        route: Route,
        stopping: asyncio.Event,
        *,
        consult_redis: bool = True,
        failed_attempt: Exception | None = None,
    ) -> Outcome:
        """``process`` for a record already decoded into ``event``.

        ``consult_redis``: False when the caller asked Redis already. ``failed_attempt``: the
        error of an attempt the caller made already (``shared.consuming.batches``), which counts as
        this record's first. Every line logged meanwhile carries the record's ids, and the
        events its handlers emit carry its span.
        """
        span = consumer_span(record, self._group)
        failure: BaseException | None = None
        try:
            with (
                about_record(record, event, span.context.trace_id),
                handling({event.event_id: span.context}),
            ):
                return await self._process_event(
                    record, event, route, stopping, consult_redis, failed_attempt
                )
        except BaseException as error:
            failure = error
            raise
        finally:
            span.end(failure)

    async def _process_event(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: Event,
        route: Route,
        stopping: asyncio.Event,
        consult_redis: bool,
        failed_attempt: Exception | None,
    ) -> Outcome:
        if (
            consult_redis
            and self._dedup is not None
            and await self._dedup.already_processed(self._group, event.event_id)
        ):
            self._stats.count(record.topic, "duplicate")
            return Outcome.duplicate
        attempts = 0
        bounded_failures = 0
        error = failed_attempt
        while True:
            attempts += 1
            if error is None:
                try:
                    outcome = await self._attempt(record, event, route)
                    break
                except Exception as failed:
                    error = failed
            # The attempt failed with ``error``.
            failure = classify(error)
            if failure is Failure.transient:
                bounded_failures += 1
            if failure is Failure.permanent or bounded_failures >= self._retry.attempts:
                return await self.dead_letter(record, event, dead_letter_reason(error), attempts)
            delay = self._retry.delay(attempts)
            self._stats.count_retry(record.topic)
            log.warning(
                "retrying %s %s (order %s) in %.2fs after attempt %d failed (%s): %s: %s",
                event.event_type,
                event.event_id,
                event.order_id,
                delay,
                attempts,
                failure.value,
                type(error).__name__,
                error,
            )
            if await _stopped_within(stopping, delay):
                return Outcome.abandoned
            error = None
        if outcome is Outcome.duplicate:
            self._stats.count(record.topic, "duplicate")
            return outcome
        if self._dedup is not None:
            await self._dedup.remember(self._group, event.event_id)
        self._stats.count(record.topic, "ok" if attempts == 1 else "retried")
        self._maybe_crash(event)
        return outcome

    def replayed_for_another_group(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Whether ``record`` is a replayed dead letter of another group (counted, logged at
        debug): done for this group without decoding or handling it, never dead-lettered."""
        meant_for = replay_header(record.headers, REPLAY_GROUP_HEADER)
        if meant_for is None or meant_for == self._group:
            return False
        log.debug(
            "skipping %s[%d]@%d: a dead letter replayed for group %s",
            record.topic,
            record.partition,
            record.offset,
            meant_for,
        )
        self._stats.count(record.topic, "replay_skipped")
        return True

    def decode(self, record: ConsumerRecord[bytes, bytes]) -> tuple[Event, Route]:
        """The record's event and route; ``PermanentError`` when it is not an event of its topic."""
        route = self._routes[record.topic]
        event = decode(record.value)
        if not isinstance(event, route.event_type):
            raise MisroutedEvent(
                f"{event.event_type} on topic {record.topic}, which carries "
                f"{route.event_type.type_name()}"
            )
        return event, route

    async def _attempt(
        self, record: ConsumerRecord[bytes, bytes], event: Event, route: Route
    ) -> Outcome:
        if self._faults is not None:
            await inject_before_handler(self._faults, event.order_id)
        async with self._units() as uow:
            # Queued behind the group's other transactions, as a batch is: one record's
            # transaction could otherwise deadlock with the group's next batch.
            await self._lock.take(uow)
            if not await self._inbox.claim(uow, self._group, event.event_id):
                return Outcome.duplicate
            started = time.perf_counter()
            uow.read_from[event.event_id] = ReadFrom(record.topic, record.partition, record.offset)
            await route.handle([event], uow)
            self.observe_handlers(route, started)
            await uow.commit()
        return Outcome.processed

    async def dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: Event | None,
        error: BaseException,
        attempts: int,
    ) -> Outcome:
        """Send ``record`` to its dead-letter topic, saying why."""
        log.error(
            "dead-lettering %s %s (order %s) from %s[%d]@%d after %d attempt(s): %s: %s",
            event.event_type if event else "record",
            event.event_id if event else "-",
            event.order_id if event else "-",
            record.topic,
            record.partition,
            record.offset,
            attempts,
            type(error).__name__,
            error,
        )
        await self._dead_letters.send(record, error, attempts)
        self._stats.count(record.topic, "dead_lettered")
        return Outcome.dead_lettered

    def observe_handlers(self, route: Route, started: float) -> None:
        """The handlers of ``route`` ran from ``started`` (``time.perf_counter``) until now."""
        self._durations.labels(self._group, route.event_type.type_name()).observe(
            time.perf_counter() - started
        )

    def _maybe_crash(self, event: Event) -> None:
        if self._faults is None or self._faults.take(FaultKind.crash, event.order_id) is None:
            return
        log.critical(
            "injected crash after committing %s %s (order %s), before its offset commit",
            event.event_type,
            event.event_id,
            event.order_id,
        )
        logging.shutdown()  # flush the line above: os._exit skips every cleanup
        self._exit_process(CRASH_EXIT_CODE)
