"""The consume pipeline: what becomes of a consumer group's records, a run at a time.

A run is a partition's records in offset order, taken through the same steps whether it
holds two hundred records or one:

0. a dead letter replayed for another group (its ``sagakit.replay.group`` header,
   ``shared.publishing.replay_target``) is done at once: not decoded, handled or dead-lettered;
1. decode; bytes that are not an event of the topic's type go to the DLQ in their place, and
   the valid records on either side of one are separate runs (order holds exactly);
2. ask Redis about the run in one round trip and skip what it knows (only for a partition's
   first runs after an assignment, where redeliveries are: ``_known_to_redis``);
3. hand the rest to the group's next transaction (``shared.consuming.committer``): one unit of
   work, behind the group's lock (``shared.consuming.group_lock``), claims every event in the
   inbox with one statement, gives the claimed ones to their routes' handlers in offset order
   (a ``Subscription.batched`` handler takes them all at once; a per-event one takes them one
   after the other, each seeing the effects of those before it), writes their outbox rows and
   commits; then one round trip tells Redis about the whole transaction.

The fallback is a policy of the same pipeline, not a second processor: when the transaction
fails, it rolls back, and each of the run's records is taken as a run of one, with its own
retries (``shared.consuming.failures``), backoff and dead letter, so a poison record never
takes its neighbours with it and a database outage is waited out record by record (a failed
transaction that held a single record was that record's first attempt, and counts as one).
Runs are taken one record at a time from the start while an injected fault may strike one of
their events, so that faults fire, are counted and crash exactly as for one record: an
injected ``crash`` exits the process after the record's commit and before its offset's, so
the record is redelivered and must be skipped. A crash after any commit redelivers the runs,
and the inbox skips them.

Metrics and spans wrap the steps (``shared.consuming.instruments``); every line logged while
a record is taken alone carries its ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias

from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.consuming.committer import GroupCommitter, Handled, RunFailed
from shared.consuming.failures import (
    Failure,
    MisroutedEvent,
    RetryPolicy,
    classify,
    dead_letter_reason,
)
from shared.consuming.faults import FaultKind, FaultRegistry, inject_before_handler
from shared.consuming.group_lock import GroupLock
from shared.consuming.inbox import Deduplicator, Inbox
from shared.consuming.instruments import Instruments
from shared.consuming.stats import ConsumerStats, Outcome
from shared.consuming.subscriptions import Route
from shared.contracts.errors import PermanentError
from shared.contracts.events import Event
from shared.observability.logs import about_record
from shared.observability.tracing import OpenSpan, handling
from shared.publishing.dlq import DeadLetterQueue
from shared.publishing.replay_target import REPLAY_GROUP_HEADER, replay_header
from shared.storage.db import ReadFrom, UnitOfWork

__all__ = ["CRASH_EXIT_CODE", "Pipeline"]

log = logging.getLogger(__name__)

CRASH_EXIT_CODE: Final = 70
"""The exit status of a process ended by an injected ``crash`` fault (EX_SOFTWARE)."""

_Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True, slots=True)
class _Decoded:
    record: _Record
    event: Event
    route: Route


_Run: TypeAlias = Sequence[_Decoded]


class Pipeline:
    """One consumer group's pipeline in this process; each partition's task calls
    ``process`` with its records, never two calls for one partition at once."""

    def __init__(
        self,
        *,
        group: str,
        routes: Mapping[str, Route],
        decode_value: Callable[[bytes | None], Event],
        units: Callable[[], UnitOfWork],
        dead_letters: DeadLetterQueue,
        retry: RetryPolicy,
        stats: ConsumerStats,
        inbox: Inbox,
        dedup: Deduplicator | None = None,
        faults: FaultRegistry | None = None,
        instruments: Instruments | None = None,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self._group = group
        self._routes = routes
        self._units = units
        self._dead_letters = dead_letters
        self._retry = retry
        self._stats = stats
        self._inbox = inbox
        self._dedup = dedup
        self._faults = faults
        self._instruments = instruments or Instruments(group)
        self._decode = decode_value
        self._exit_process = exit_process
        self._lock = GroupLock(group)
        self._settled: set[TopicPartition] = set()
        self._committer: GroupCommitter[_Run] = GroupCommitter(
            group, self._shared_transaction, self._remember
        )

    async def process(self, records: Sequence[_Record], stopping: asyncio.Event) -> int:
        """Take ``records`` (of one partition, in offset order); return how many are done.

        Fewer than all only when ``stopping`` was set during a retry's backoff: the records
        from there on are not done and are read again by the partition's next owner.
        """
        done = 0
        run: list[_Decoded] = []
        for record in records:
            refused: PermanentError | None = None
            if not self._replayed_for_another_group(record):
                try:
                    run.append(self._decoded(record))
                    continue
                except PermanentError as error:
                    refused = error
            # Not an event, or not ours: the run ends before it (``done`` is in offset order).
            finished = await self._run(run, stopping)
            if finished < len(run):
                return done + finished
            done += len(run)
            run = []
            if refused is not None:
                with about_record(record):
                    await self._dead_letter(record, None, refused, attempts=1)
            done += 1
        return done + await self._run(run, stopping)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """``tps`` were released: ask Redis again about their first records next time."""
        self._settled.difference_update(tps)

    async def _run(self, run: _Run, stopping: asyncio.Event) -> int:
        if not run:
            return 0
        topic = run[0].record.topic  # a run is one partition's
        known = await self._known_to_redis(run)
        fresh = [item for item in run if item.event.event_id not in known]
        self._stats.count(topic, "duplicate", len(run) - len(fresh))
        if not fresh:
            return len(run)
        if self._faults_may_fire(fresh):
            return await self._one_at_a_time(run, stopping, known)
        try:
            handled = await self._committer.submit(fresh)
        except RunFailed as failed:  # rolled back: taken one record at a time
            if failed.alone:  # that was the record's first attempt, counted as such
                item = fresh[0]
                outcome = await self._alone(item, stopping, failed.error)
                return len(run) if outcome is not Outcome.abandoned else run.index(item)
            log.info(
                "a run of %d records of %s[%d] failed together (%s); taking them one at a time",
                len(fresh),
                topic,
                fresh[0].record.partition,
                failed,
            )
            self._stats.batch_fallbacks += 1
            return await self._one_at_a_time(run, stopping, known)
        self._stats.count(topic, "ok", len(handled))
        self._stats.count(topic, "duplicate", len(fresh) - len(handled))
        return len(run)  # the committer told Redis

    async def _one_at_a_time(
        self, run: _Run, stopping: asyncio.Event, known: set[uuid.UUID]
    ) -> int:
        for done, item in enumerate(run):
            if stopping.is_set():
                return done
            if item.event.event_id in known:
                continue  # Redis knew it (counted as a duplicate already)
            if await self._alone(item, stopping) is Outcome.abandoned:
                return done
        return len(run)

    async def _alone(
        self, item: _Decoded, stopping: asyncio.Event, failed_attempt: Exception | None = None
    ) -> Outcome:
        """``item`` as a run of one, tried until it is handled or dead-lettered (or abandoned
        when ``stopping`` is set during a backoff). ``failed_attempt``: the error of an attempt
        made already, which counts as its first. Every line logged meanwhile carries the
        record's ids, and the events its handlers emit carry its span, whatever the attempt."""
        span = self._instruments.span(item.record)
        failure: BaseException | None = None
        try:
            with (
                about_record(item.record, item.event, span.context.trace_id),
                handling({item.event.event_id: span.context}),
            ):
                return await self._retrying(item, stopping, span, failed_attempt)
        except BaseException as error:
            failure = error
            raise
        finally:
            span.end(failure)

    async def _retrying(
        self,
        item: _Decoded,
        stopping: asyncio.Event,
        span: OpenSpan,
        failed_attempt: Exception | None,
    ) -> Outcome:
        record, event = item.record, item.event
        attempts = 0
        bounded_failures = 0
        error = failed_attempt
        while True:
            attempts += 1
            if error is None:
                try:
                    outcome = await self._attempt(item, span)
                    break
                except Exception as failed:
                    error = failed
            failure = classify(error)
            if failure is Failure.transient:
                bounded_failures += 1
            if failure is Failure.permanent or bounded_failures >= self._retry.attempts:
                return await self._dead_letter(record, event, dead_letter_reason(error), attempts)
            delay = self._retry.delay(attempts)
            self._stats.count_retry(record.topic)
            log.warning(
                "retrying %s %s (%s %s) in %.2fs after attempt %d failed (%s): %s: %s",
                event.event_type,
                event.event_id,
                event.entity_name(),
                event.entity_key,
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

    async def _attempt(self, item: _Decoded, span: OpenSpan) -> Outcome:
        if self._faults is not None:
            await inject_before_handler(self._faults, item.event.entity_key)
        (handled,) = await self._transaction([[item]], {item.event.event_id: span})
        return Outcome.processed if handled else Outcome.duplicate

    async def _shared_transaction(self, runs: Sequence[_Run]) -> list[Handled]:
        """The committer's transaction: the runs the partitions submitted meanwhile."""
        handled = await self._transaction(runs)
        self._stats.batches += 1
        self._stats.batched += sum(len(ids) for ids in handled)
        return handled

    async def _remember(self, handled: list[Handled]) -> None:
        if self._dedup is not None:  # for the whole transaction in one round trip
            await self._dedup.remember_all(self._group, [i for ids in handled for i in ids])

    async def _transaction(
        self, runs: Sequence[_Run], open_spans: Mapping[uuid.UUID, OpenSpan] | None = None
    ) -> list[Handled]:
        """One unit of work for ``runs``, behind the group's lock; the events each handled."""
        instruments = self._instruments
        async with self._units() as uow:
            instruments.reached("begun", runs)
            everything = [item.event.event_id for run in runs for item in run]
            claimed = await self._inbox.claim_all(uow, self._group, everything, lock=self._lock)
            instruments.reached("locked", runs)
            handled: list[Handled] = []
            taken: list[_Decoded] = []
            by_route: dict[str, tuple[Route, list[Event]]] = {}
            for run in runs:
                handled.append([])
                for item in run:
                    if item.event.event_id not in claimed:
                        continue  # processed before, or twice here: once is enough
                    claimed.discard(item.event.event_id)
                    handled[-1].append(item.event.event_id)
                    taken.append(item)
                    record = item.record
                    uow.read_from[item.event.event_id] = ReadFrom(
                        record.topic, record.partition, record.offset
                    )
                    by_route.setdefault(item.route.topic, (item.route, []))[1].append(item.event)
            with instruments.traced(taken, open_spans or {}):
                # Per topic, each partition's events stay in their order; across topics order
                # was never promised (an order's events on two topics come in any order).
                for route, events in by_route.values():
                    with instruments.timing(route):
                        await route.handle(events, uow)
                await uow.commit()
        instruments.reached("committed", runs)
        return handled

    def _decoded(self, record: _Record) -> _Decoded:
        """The record's event and route; ``PermanentError`` when it is not an event of its topic."""
        route = self._routes[record.topic]
        event = self._decode(record.value)
        if not isinstance(event, route.event_type):
            raise MisroutedEvent(
                f"{event.event_type} on topic {record.topic}, which carries "
                f"{route.event_type.type_name()}"
            )
        return _Decoded(record, event, route)

    def _replayed_for_another_group(self, record: _Record) -> bool:
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

    async def _dead_letter(
        self, record: _Record, event: Event | None, error: BaseException, attempts: int
    ) -> Outcome:
        """Send ``record`` to its dead-letter topic, saying why."""
        log.error(
            "dead-lettering %s %s (%s %s) from %s[%d]@%d after %d attempt(s): %s: %s",
            event.event_type if event else "record",
            event.event_id if event else "-",
            event.entity_name() if event else "entity",
            event.entity_key if event else "-",
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

    def _faults_may_fire(self, run: _Run) -> bool:
        return self._faults is not None and self._faults.covers_any(
            item.event.entity_key for item in run
        )

    async def _known_to_redis(self, run: _Run) -> set[uuid.UUID]:
        """The events of ``run`` Redis knows were processed, while that is worth asking.

        Redeliveries come as a partition's first records after an assignment (what the last
        owner had done but not committed): Redis is asked until a run comes back with
        nothing known, and then not again until the partition is assigned anew. A duplicate
        later in the log (an outbox row published twice) is still skipped, by the inbox.
        """
        tp = TopicPartition(run[0].record.topic, run[0].record.partition)
        if self._dedup is None or tp in self._settled:
            return set()
        known = await self._dedup.processed_among(
            self._group, [item.event.event_id for item in run]
        )
        if not known:
            self._settled.add(tp)
        return known

    def _maybe_crash(self, event: Event) -> None:
        if self._faults is None or self._faults.take(FaultKind.crash, event.entity_key) is None:
            return
        log.critical(
            "injected crash after committing %s %s (%s %s), before its offset commit",
            event.event_type,
            event.event_id,
            event.entity_name(),
            event.entity_key,
        )
        logging.shutdown()  # flush the line above: os._exit skips every cleanup
        self._exit_process(CRASH_EXIT_CODE)


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        return False
    return True
