"""A poll's records in one transaction per consumer group, one at a time when that fails.

Processing a record on its own costs a transaction: a Redis round trip, BEGIN, the inbox
claim, the handler's statements, the outbox rows, COMMIT, and a second Redis round trip.
Under load a poll brings tens or hundreds of records per partition, so ``BatchProcessor``
takes a run of them together:

1. decode each record; bytes that are not an event go to the DLQ in their place, and the
   valid records on either side of one are separate runs (order holds exactly); a dead
   letter replayed for another group is done without being decoded, and splits runs alike;
2. ask Redis about the whole run in one pipelined round trip, skip what it knows (only for a
   partition's first runs after an assignment, where redeliveries are: ``_known_to_redis``);
3. if an active fault may fire for any order of the run, take the run one record at a time:
   faults fire, are counted and crash exactly as they do for one record;
4. otherwise the run goes into the group's next transaction (below), whose unit of work
   claims every event in the inbox with one statement, hands the claimed ones to their
   routes' handlers in offset order (a ``Subscription.batched`` handler takes them all at
   once; a per-event one takes them one after the other, each seeing the effects of those
   before it in the same transaction), writes their outbox rows and commits; then one round
   trip tells Redis about the whole transaction.

Any exception in step 4 rolls the whole transaction back, and every run in it is then
processed one record at a time by ``RecordProcessor``, with its retries, backoff and
dead-lettering: a poison record never takes its neighbours with it, and a database outage is
waited out record by record. (A transaction that held a single record was that record's
first attempt and counts as one.) A crash after the commit redelivers the runs, and the
inbox skips all of them.

One transaction at a time per consumer group, shared by the partitions' runs
    A run locks the rows its handlers touch (a customer's balance, a sku's stock) and holds
    them until it commits. Two transactions of one group in flight at once (two partitions,
    or two instances) lock overlapping rows in different orders and deadlock: tried with 500
    customers and 100 skus, most runs of payment and inventory did, and each deadlock costs
    PostgreSQL's ``deadlock_timeout`` (1 s) before one is aborted. So a group's transaction
    first takes a transaction-scoped advisory lock named after the group
    (``shared.consuming.group_lock``; so does each one-record transaction of a run taken one record
    at a time, which would otherwise deadlock with the group's next batch), and in one process
    one task (the committer) runs the group's transactions one after the other. The runs the
    partitions submit while one transaction is under way all go into the next one, each
    partition's records in their order: at a few records per partition per poll (100 orders
    a second spread over 6 partitions of each topic) that is one transaction where there were
    tens. Decoding, Redis and Kafka stay concurrent; groups never wait for each other; a run
    whose shared transaction fails is taken one record at a time by its partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.consuming.faults import FaultRegistry
from shared.consuming.group_lock import GroupLock
from shared.consuming.inbox import Deduplicator, Inbox
from shared.consuming.processing import ConsumerStats, Outcome, RecordProcessor, consumer_span
from shared.consuming.subscriptions import Route
from shared.contracts.errors import PermanentError
from shared.contracts.events import Event
from shared.observability.logs import about_record
from shared.observability.stages import StageClock
from shared.observability.tracing import OpenSpan, TraceParent, handling
from shared.storage.db import ReadFrom, UnitOfWork

__all__ = ["BatchProcessor"]

log = logging.getLogger(__name__)

_Record: TypeAlias = ConsumerRecord[bytes, bytes]
_Handled: TypeAlias = list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class _Decoded:
    record: _Record
    event: Event
    route: Route


class _TransactionFailed(Exception):
    """The group's transaction with this run failed; ``alone``: it held just this record,
    whose first attempt it therefore was."""

    def __init__(self, error: Exception, *, alone: bool) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.alone = alone


@dataclass(frozen=True, slots=True)
class _Submission:
    """A partition's run waiting for the group's next transaction."""

    run: Sequence[_Decoded]
    handled: asyncio.Future[_Handled]


class BatchProcessor:
    """Takes the records of one partition through ``RecordProcessor``'s steps, run by run."""

    def __init__(
        self,
        processor: RecordProcessor,
        *,
        group: str,
        units: Callable[[], UnitOfWork],
        stats: ConsumerStats,
        inbox: Inbox,
        dedup: Deduplicator | None = None,
        faults: FaultRegistry | None = None,
        stages: StageClock | None = None,
    ) -> None:
        self._processor = processor
        self._group = group
        self._stages = stages
        self._units = units
        self._stats = stats
        self._inbox = inbox
        self._dedup = dedup
        self._faults = faults
        self._lock = GroupLock(group)
        self._settled: set[TopicPartition] = set()
        self._submitted: list[_Submission] = []
        self._committer: asyncio.Task[None] | None = None

    async def process(self, records: Sequence[_Record], stopping: asyncio.Event) -> int:
        """Process ``records`` (of one partition, in offset order); return how many are done.

        Fewer than all only when ``stopping`` was set during a retry's backoff: the records
        from there on are not done and are read again by the partition's next owner.
        """
        done = 0
        run: list[_Decoded] = []
        for record in records:
            refused: PermanentError | None = None
            if not self._processor.replayed_for_another_group(record):
                try:
                    event, route = self._processor.decode(record)
                except PermanentError as error:
                    refused = error
                else:
                    run.append(_Decoded(record, event, route))
                    continue
            # Not an event, or not ours: the run ends before it (``done`` is in offset order).
            finished = await self._process_run(run, stopping)
            if finished < len(run):
                return done + finished
            done += len(run)
            run = []
            if refused is not None:
                with about_record(record):
                    await self._processor.dead_letter(record, None, refused, attempts=1)
            done += 1
        return done + await self._process_run(run, stopping)

    async def _process_run(self, run: Sequence[_Decoded], stopping: asyncio.Event) -> int:
        if not run:
            return 0
        topic = run[0].record.topic  # a run is one partition's
        known = await self._known_to_redis(run)
        fresh = [item for item in run if item.event.event_id not in known]
        self._stats.count(topic, "duplicate", len(run) - len(fresh))
        if not fresh:
            return len(run)
        if self._faults_may_fire(fresh):
            return await self._one_by_one(run, stopping, known)
        try:
            handled = await self._attempt(fresh)
        except _TransactionFailed as failed:  # rolled back: retried record by record
            if failed.alone:  # that was the record's first attempt, counted as such
                item = fresh[0]
                outcome = await self._processor.process_event(
                    item.record,
                    item.event,
                    item.route,
                    stopping,
                    consult_redis=False,
                    failed_attempt=failed.error,
                )
                return len(run) if outcome is not Outcome.abandoned else run.index(item)
            log.info(
                "a run of %d records of %s[%d] failed together (%s); taking them one at a time",
                len(fresh),
                fresh[0].record.topic,
                fresh[0].record.partition,
                failed,
            )
            self._stats.batch_fallbacks += 1
            return await self._one_by_one(run, stopping, known)
        self._stats.count(topic, "ok", len(handled))
        self._stats.count(topic, "duplicate", len(fresh) - len(handled))
        return len(run)  # the committer tells Redis

    async def _attempt(self, run: Sequence[_Decoded]) -> _Handled:
        """Handle ``run`` in the group's next transaction; returns its events handled."""
        handled: asyncio.Future[_Handled] = asyncio.get_running_loop().create_future()
        self._submitted.append(_Submission(run, handled))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_submitted(), name=self._group)
        # Cancelled here (its partition was taken away mid-run), the run is dropped if its
        # transaction has not begun, and otherwise commits: its redelivery is then skipped.
        return await handled

    async def _commit_submitted(self) -> None:
        while self._submitted:
            await asyncio.sleep(0)  # the other partitions of this poll submit theirs too
            taken = [s for s in self._submitted if not s.handled.done()]
            self._submitted = []
            if not taken:
                continue
            try:
                results = await self._transaction([s.run for s in taken])
            except Exception as error:  # each run is then taken one record at a time
                alone = len(taken) == 1 and len(taken[0].run) == 1
                for submission in taken:
                    if not submission.handled.done():
                        submission.handled.set_exception(_TransactionFailed(error, alone=alone))
                continue
            for submission, handled in zip(taken, results, strict=True):
                if not submission.handled.done():
                    submission.handled.set_result(handled)
            if self._dedup is not None:  # for the whole transaction in one round trip
                await self._dedup.remember_all(self._group, [i for ids in results for i in ids])

    async def _transaction(self, runs: Sequence[Sequence[_Decoded]]) -> list[_Handled]:
        """One transaction for ``runs``; returns the events each handled, in order."""
        spans: dict[uuid.UUID, OpenSpan] = {}
        failure: BaseException | None = None
        try:
            async with self._units() as uow:
                self._reached("begun", runs)
                await self._lock.take(uow)
                self._reached("locked", runs)
                everything = [item.event.event_id for run in runs for item in run]
                claimed = await self._inbox.claim_all(uow, self._group, everything)
                handled: list[_Handled] = []
                by_route: dict[str, tuple[Route, list[Event]]] = {}
                for run in runs:
                    handled.append([])
                    for item in run:
                        if item.event.event_id not in claimed:
                            continue  # processed before, or twice here: once is enough
                        claimed.discard(item.event.event_id)
                        handled[-1].append(item.event.event_id)
                        record = item.record
                        uow.read_from[item.event.event_id] = ReadFrom(
                            record.topic, record.partition, record.offset
                        )
                        spans[item.event.event_id] = consumer_span(record, self._group)
                        route, events = by_route.setdefault(item.route.topic, (item.route, []))
                        events.append(item.event)
                # The events each handler emits belong to the span of the event causing them.
                contexts: dict[uuid.UUID, TraceParent] = {i: s.context for i, s in spans.items()}
                with handling(contexts):
                    # Per topic, each partition's events stay in their order; across topics
                    # order was never promised (an order's events on two topics come in any).
                    for route, events in by_route.values():
                        started = time.perf_counter()
                        await route.handle(events, uow)
                        self._processor.observe_handlers(route, started)
                await uow.commit()
            self._reached("committed", runs)
        except BaseException as error:
            failure = error
            raise
        finally:
            for span in spans.values():
                span.end(failure)
        self._stats.batches += 1
        self._stats.batched += sum(len(ids) for ids in handled)
        return handled

    def _reached(self, stage: str, runs: Sequence[Sequence[_Decoded]]) -> None:
        """The records of ``runs`` reached ``stage`` of their hop now (one clock reading)."""
        if self._stages is None:
            return
        now = time.time()
        for run in runs:  # a run is one partition's, so one topic's
            topic = run[0].record.topic
            self._stages.observe(
                (topic, self._group, stage), now, [i.record.timestamp for i in run]
            )

    async def _one_by_one(
        self, run: Sequence[_Decoded], stopping: asyncio.Event, known: set[uuid.UUID]
    ) -> int:
        for done, item in enumerate(run):
            if stopping.is_set():
                return done
            if item.event.event_id in known:
                continue  # Redis knew it (counted as a duplicate already)
            outcome = await self._processor.process_event(
                item.record, item.event, item.route, stopping, consult_redis=False
            )
            if outcome is Outcome.abandoned:
                return done
        return len(run)

    def _faults_may_fire(self, run: Sequence[_Decoded]) -> bool:
        return self._faults is not None and self._faults.covers_any(
            item.event.order_id for item in run
        )

    async def _known_to_redis(self, run: Sequence[_Decoded]) -> set[uuid.UUID]:
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

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """``tps`` were released: ask Redis again about their first records next time."""
        self._settled.difference_update(tps)
