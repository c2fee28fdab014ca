"""Partitions processed concurrently, each one strictly in order.

Each partition has a queue of polled records and at most one task, which takes everything
queued, in offset order (runs of records in one transaction each, ``shared.consuming.pipeline``),
then what was queued meanwhile, until the queue is empty. The offsets done are committed about
once a second, every partition in one request (``commit_due``). So a partition never has two
batches in flight (order holds), other partitions go on, and the poll loop never waits for
a handler: a record retrying with backoff holds back only its own partition, and the
consumer keeps polling (which is what keeps it in its group, see ``shared.consuming.consumer``).

A partition is paused only when its queue is long (twice the batch size), and resumed once
the task has caught up. Pausing every partition while its batch was processed, as this
module first did, cost latency at low load: aiokafka sends no new fetch to a broker while
one is in flight, so a resumed partition waited for the fetch in flight (which the broker
holds up to ``fetch_max_wait_ms``, 500 ms, when the other partitions have nothing) before
its next record could arrive: about 100 ms per hop of a saga at 10 orders/s.

Releasing partitions (revocation or shutdown) stops their tasks after the record in hand,
cancels a task still busy after a grace period (its unit of work rolls back, or is already
committed and the redelivery is skipped by the inbox), and commits the offsets of the
records that are done. Records fetched but not started are not committed: whoever owns the
partition next reads them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.consuming.pipeline import Pipeline
from shared.consuming.stats import ConsumerStats
from shared.consuming.subscriptions import Route
from shared.observability.stages import StageClock

__all__ = ["COMMIT_INTERVAL_S", "PartitionWorkers"]

log = logging.getLogger(__name__)

# After a failure the runner could not place (a bug), wait this long before re-reading.
_RECOVERY_PAUSE_S = 1.0

COMMIT_INTERVAL_S = 1.0
"""How often the offsets of the records done are committed, all partitions in one request."""


@dataclass(eq=False)
class _Partition:
    tp: TopicPartition
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    queued: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    """Polled records not yet taken by the task, in offset order."""
    paused: bool = False
    task: asyncio.Task[None] | None = None
    done: int = -1
    """The offset after the last record fully processed in this assignment (-1: none)."""
    committed: int = -1
    """The last offset this process committed for the partition in this assignment."""
    start: int = -1
    """The offset of the first record polled in this assignment (-1: none yet): where the
    group's committed offset stood when the assignment began."""
    stamps: list[int] = field(default_factory=list)
    """The Kafka timestamps of the records done since the last offset commit (only when
    stages are timed): the commit is their last stage."""


class PartitionWorkers:
    """The per-partition tasks of one consumer, their offsets and their commits.

    ``consumer`` is the started ``AIOKafkaConsumer`` (group management, manual commits).
    At-least-once records go to ``pipeline`` at most ``batch_size`` at a time (runs of one
    transaction each, see ``shared.consuming.pipeline``); at-most-once records one by one,
    their offsets committed first.
    """

    def __init__(
        self,
        consumer: Any,
        pipeline: Pipeline,
        routes: Mapping[str, Route],
        stats: ConsumerStats,
        *,
        grace_s: float,
        batch_size: int = 200,
        commit_timeout_s: float = 10.0,
        group: str = "",
        stages: StageClock | None = None,
    ) -> None:
        self._consumer = consumer
        self._pipeline = pipeline
        self._batch_size = batch_size
        self._routes = routes
        self._stats = stats
        self._grace_s = grace_s
        self._commit_timeout_s = commit_timeout_s
        self._group = group
        self._stages = stages
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._last_commit = time.monotonic()

    def dispatch(self, tp: TopicPartition, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Queue a polled batch of ``tp``; start its task unless it is running."""
        if self._stages is not None:  # called as the poll returns, with no await before
            self._stages.since((tp.topic, self._group, "fetched"), [r.timestamp for r in records])
        partition = self._partitions.setdefault(tp, _Partition(tp))
        if partition.start < 0:
            partition.start = int(records[0].offset)
        partition.queued.extend(records)
        if len(partition.queued) >= 2 * self._batch_size and not partition.paused:
            self._consumer.pause(tp)
            partition.paused = True
        if partition.task is None:
            partition.task = asyncio.create_task(
                self._run(partition), name=f"consume {tp.topic}[{tp.partition}]"
            )

    async def release(self, tps: Iterable[TopicPartition]) -> None:
        """Stop the work of ``tps`` and commit what is done; they are no longer ours."""
        tps = list(tps)
        self._pipeline.forget(tps)
        released = [self._partitions.pop(tp) for tp in tps if tp in self._partitions]
        for partition in released:
            partition.stopping.set()
        tasks = [p.task for p in released if p.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self._grace_s)
            for task in late:
                log.warning(
                    "cancelling %s: still busy %.1fs after release", task.get_name(), self._grace_s
                )
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        offsets = {p.tp: p.done for p in released if p.done > p.committed}
        if offsets:
            await self._commit(offsets, released)

    async def commit_due(self) -> None:
        """Commit the offsets done since the last commit, of every partition in one request,
        if ``COMMIT_INTERVAL_S`` has passed since then (the poll loop calls it each round).

        Not after every batch: under load that was a commit round trip per batch per
        partition. A crash redelivers at most about a second of records, which the inbox
        (and Redis, consulted for a partition's first records after an assignment) skips.
        """
        now = time.monotonic()
        if now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        offsets = {p.tp: p.done for p in self._partitions.values() if p.done > p.committed}
        if offsets:
            await self._commit(offsets, self._partitions.values())

    def committed_offsets(self) -> dict[TopicPartition, int]:
        """The group's committed offset of each partition that had records in this assignment:
        this process's last commit, or where the assignment began (known without asking the
        coordinator, so ``/metrics`` can compute the lag at no cost)."""
        return {
            tp: p.committed if p.committed >= 0 else p.start
            for tp, p in self._partitions.items()
            if p.start >= 0
        }

    async def release_all(self) -> None:
        """``release`` every partition (shutdown)."""
        await self.release(list(self._partitions))

    async def _run(self, partition: _Partition) -> None:
        tp = partition.tp
        records: Sequence[ConsumerRecord[bytes, bytes]] = ()
        try:
            while partition.queued and not partition.stopping.is_set():
                records, partition.queued = partition.queued, []
                await self._process(partition, records)
                if partition.stopping.is_set():
                    return  # ``release`` commits what is done; the next owner reads the rest
                if partition.done <= records[-1].offset:
                    # Stopped short without being released (a lost commit in at-most-once
                    # mode): read the rest again rather than skip it.
                    self._rewind(partition, max(partition.done, int(records[0].offset)))
                    return
                if partition.paused and len(partition.queued) < self._batch_size:
                    self._resume(partition)
        except Exception:
            log.exception("unexpected failure consuming %s; reading it again shortly", tp)
            await asyncio.sleep(_RECOVERY_PAUSE_S)
            if records and not partition.stopping.is_set():
                self._rewind(partition, max(partition.done, int(records[0].offset)))
        finally:
            # Cleared with no await since the queue was last found empty, so that a batch
            # polled meanwhile starts a new task, and ``release`` waits for the commit.
            partition.task = None

    def _rewind(self, partition: _Partition, offset: int) -> None:
        """Drop what is queued and read ``partition`` again from ``offset``."""
        partition.queued = []
        try:
            self._consumer.seek(partition.tp, offset)
        except IllegalStateError:
            return  # revoked meanwhile: the new assignment starts from the committed offset
        self._resume(partition)

    def _resume(self, partition: _Partition) -> None:
        if not partition.paused:
            return
        partition.paused = False
        with contextlib.suppress(IllegalStateError):  # revoked meanwhile: nothing to resume
            self._consumer.resume(partition.tp)

    async def _process(
        self, partition: _Partition, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        # A partition is one topic, so one delivery for the whole batch.
        if self._routes[records[0].topic].delivery == "at_most_once":
            await self._process_at_most_once(partition, records)
            return
        for start in range(0, len(records), self._batch_size):
            if partition.stopping.is_set():
                return
            chunk = records[start : start + self._batch_size]
            done = await self._pipeline.process(chunk, partition.stopping)
            if done:
                partition.done = int(chunk[done - 1].offset) + 1
                if self._stages is not None:
                    partition.stamps.extend(record.timestamp for record in chunk[:done])
            if done < len(chunk):
                return

    async def _process_at_most_once(
        self, partition: _Partition, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> None:
        # Record by record: each offset is committed before its handler runs.
        for record in records:
            if partition.stopping.is_set():
                return
            after = int(record.offset) + 1
            if not await self._commit({partition.tp: after}):
                return
            if not await self._pipeline.process([record], partition.stopping):
                return  # abandoned: the partition is being released
            partition.done = after

    async def _commit(
        self, offsets: dict[TopicPartition, int], partitions: Iterable[_Partition] = ()
    ) -> bool:
        # The records done up to ``offsets``, taken now: more may be done during the commit.
        stamps: list[tuple[str, list[int]]] = []
        for done in partitions:
            if done.tp in offsets and done.stamps:
                stamps.append((done.tp.topic, done.stamps))
                done.stamps = []
        try:
            # aiokafka retries retriable commit errors without end; a rebalance must not
            # wait on a coordinator that is gone.
            async with asyncio.timeout(self._commit_timeout_s):
                await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            self._stats.commit_failures += 1
            log.warning(
                "offset commit %s lost to a rebalance (%s): the partition's next owner "
                "redelivers from the last committed offset and the inbox skips what was done",
                _describe(offsets),
                error,
            )
            return False
        except (KafkaError, TimeoutError) as error:
            self._stats.commit_failures += 1
            log.error("offset commit %s failed: %r", _describe(offsets), error)
            return False
        for tp, offset in offsets.items():
            partition = self._partitions.get(tp)
            if partition is not None:
                partition.committed = max(partition.committed, offset)
        if self._stages is not None:
            now = time.time()
            for topic, records in stamps:
                self._stages.observe((topic, self._group, "offset_committed"), now, records)
        return True


def _describe(offsets: Mapping[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in offsets.items())
