"""The consumer runner: one consumer group, its subscriptions, manual commits, clean rebalances.

``ConsumerRunner`` polls its topics, hands each partition's batch to ``PartitionWorkers``
(partitions concurrently, each in order), whose records the group's ``Pipeline`` decodes,
deduplicates, handles, retries and dead-letters (``shared.consuming.pipeline``); offsets are
committed only once a record is done (at-least-once), or before its handler for
``at_most_once`` subscriptions.

Staying in the group: aiokafka heartbeats from a background task, but it also leaves the
group when ``getmany`` has not been called for ``max_poll_interval_ms``. The poll loop here
never waits for a handler: each partition's records queue for its own task
(``shared.consuming.partitions``), and the loop keeps calling ``getmany``. A record retrying with
backoff, or a slow handler, therefore never makes the consumer drop out of its group.

Rebalances: aiokafka uses the eager protocol (every rebalance revokes every partition, then
assigns them afresh, positions read from the committed offsets). On revocation the runner
stops each partition's work after the record in hand (a record waiting for its next retry
is abandoned at once), cancels what is still busy after ``revoke_grace_s``, and commits the
offsets of the records that are done; a commit that fails because the group has moved on is
logged and not raised (the next owner redelivers, the inbox skips). aiokafka's rebalance
timeout defaults to its 10 s session timeout; the runner sets it to leave room for the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import IllegalStateError
from aiokafka.structs import TopicPartition

from shared.consuming.failures import RetryPolicy
from shared.consuming.faults import FaultRegistry
from shared.consuming.inbox import Deduplicator, Inbox
from shared.consuming.instruments import Instruments, consumer_stages, handler_durations
from shared.consuming.partitions import PartitionWorkers
from shared.consuming.pipeline import Pipeline
from shared.consuming.stats import OUTCOMES, ConsumerStats
from shared.consuming.subscriptions import Delivery, Handler, Subscription, routes_by_topic
from shared.contracts.topics import Topics, records_behind
from shared.observability.metrics import Metric, counter, gauge
from shared.publishing.dlq import DeadLetterQueue
from shared.publishing.producer import build_producer
from shared.settings import PlatformSettings, kafka_client_options
from shared.storage.db import UnitOfWork

__all__ = ["ConsumerRunner", "ConsumerStats", "Delivery", "Handler", "Subscription"]

log = logging.getLogger(__name__)

# How long one poll waits for records. It bounds how quickly ``stop`` is noticed, not
# latency: a poll returns as soon as any partition has records.
POLL_TIMEOUT_MS = 500
# A poll that has not come back for this long means a consumer that consumes nothing while
# its process answers: ``check_polling`` (``/readyz``) fails. Longer than a rebalance can
# hold a poll (its timeout and the revocation's grace).
POLL_STALL_S = 60.0
REVOKE_GRACE_S = 10.0
REBALANCE_TIMEOUT_MS = 30_000
# Dead-letter topics' sizes cost two ListOffsets requests: asked at most this often.
DLQ_SIZES_MAX_AGE_S = 10.0
_POSITION_TIMEOUT_S = 0.1


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._runner._on_assigned(assigned)


class ConsumerRunner:
    """Consumes the topics of ``subscriptions`` as consumer group ``group_id``.

    ``units`` makes a fresh unit of work per attempt; ``dedup`` is the Redis fast path
    (optional: the inbox alone is enough); ``producer`` is a started producer from
    ``build_producer`` used for dead letters (without one the runner builds and owns its
    own); ``faults`` enables failure injection. ``consumer_options`` override the
    ``AIOKafkaConsumer`` settings (tests shorten heartbeats with it).
    """

    def __init__(
        self,
        *,
        group_id: str,
        subscriptions: Sequence[Subscription],
        settings: PlatformSettings,
        units: Callable[[], UnitOfWork],
        topics: Topics,
        dedup: Deduplicator | None = None,
        inbox: Inbox | None = None,
        producer: AIOKafkaProducer | None = None,
        faults: FaultRegistry | None = None,
        revoke_grace_s: float = REVOKE_GRACE_S,
        consumer_options: Mapping[str, Any] | None = None,
        poll_stall_s: float = POLL_STALL_S,
    ) -> None:
        self.group_id = group_id
        self.stats = ConsumerStats()
        self._durations = handler_durations()
        self._stages = consumer_stages()
        self._dlq_sizes: tuple[float, dict[str, int]] = (0.0, {})
        self._settings = settings
        self._routes = routes_by_topic(subscriptions, topics)
        self._decode = topics.catalogue.decode
        self._units = units
        self._dedup = dedup
        self._inbox = inbox or Inbox()
        self._producer = producer
        self._owns_producer = producer is None
        self._faults = faults
        self._revoke_grace_s = revoke_grace_s
        self._consumer_options = dict(consumer_options or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._workers: PartitionWorkers | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._poll_stall_s = poll_stall_s
        self._polled_at = time.monotonic()
        self._assigned: frozenset[TopicPartition] = frozenset()

    @property
    def topics(self) -> list[str]:
        """The topics this group subscribes to."""
        return sorted(self._routes)

    @property
    def joined(self) -> bool:
        """Whether the group has given this process its first assignment (possibly empty)."""
        return self.stats.rebalances > 0

    @property
    def assigned_partitions(self) -> frozenset[TopicPartition]:
        """The partitions this process owns in the group right now (empty while rebalancing)."""
        return self._assigned

    def seconds_since_poll(self) -> float:
        """How long ago the last poll came back (since the start, before the first)."""
        return time.monotonic() - self._polled_at

    def check_polling(self) -> None:
        """Raise ``RuntimeError`` when this runner has stopped consuming: its poll loop has
        ended, or no poll has come back for ``poll_stall_s``."""
        task = self._poll_task
        if task is None or task.done():
            raise RuntimeError(f"{self.group_id}: the poll loop is not running")
        since = self.seconds_since_poll()
        if since > self._poll_stall_s:
            raise RuntimeError(f"{self.group_id}: no poll has come back for {since:.0f} s")

    async def start(self) -> None:
        """Join the group and start consuming; returns before the first assignment."""
        if self._poll_task is not None:
            raise RuntimeError(f"consumer runner {self.group_id!r} is already started")
        if self._producer is None:
            self._producer = build_producer(self._settings)
            await self._producer.start()
        consumer = AIOKafkaConsumer(**self._consumer_config())
        try:
            await consumer.start()
        except BaseException:
            if self._owns_producer:
                await self._producer.stop()
                self._producer = None
            raise
        self._consumer = consumer
        self._workers = PartitionWorkers(
            consumer,
            self._pipeline(),
            self._routes,
            self.stats,
            grace_s=self._revoke_grace_s,
            batch_size=self._settings.consumer_batch_size,
            group=self.group_id,
            stages=self._stages,
        )
        consumer.subscribe(self.topics, listener=_Rebalances(self))
        self._polled_at = time.monotonic()
        self._poll_task = asyncio.create_task(self._poll(), name=f"poll {self.group_id}")

    async def stop(self) -> None:
        """Finish the records in hand, commit, leave the group, close. Safe to call twice."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        if self._workers is not None:
            await self._workers.release_all()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._owns_producer and self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._consumer = None
        self._workers = None
        self._assigned = frozenset()

    async def metrics(self) -> list[Metric]:
        """The group's counters, handler durations, assignment and lag as metric families."""
        group, stats = self.group_id, self.stats
        by_topic = stats.by_topic
        families: list[Metric] = [
            counter(
                "sagakit_consumer_events",
                "Records consumed, by what became of them: ok (first attempt), retried (ok "
                "after retries), dead_lettered, duplicate (skipped, processed before), "
                "replay_skipped (a dead letter replayed for another group)",
                ("group", "topic", "outcome"),
                {(group, t, o): counts[o] for t, counts in by_topic.items() for o in OUTCOMES},
            ),
            counter(
                "sagakit_consumer_retries",
                "Handler attempts that failed and were tried again",
                ("group", "topic"),
                {(group, t): counts["retries"] for t, counts in by_topic.items()},
            ),
            counter(
                "sagakit_dlq_published",
                "Records this group sent to a dead-letter topic",
                ("group", "topic"),
                {(group, Topics.dlq(t)): counts["dead_lettered"] for t, counts in by_topic.items()},
            ),
        ]
        group_counters = {
            "commit_failures": ("offset commits that failed", stats.commit_failures),
            "rebalances": ("partition assignments received", stats.rebalances),
            "batches": ("transactions that committed a run of records", stats.batches),
            "batched_records": ("records handled in those transactions", stats.batched),
            "batch_fallbacks": (
                "runs that failed together and went one record at a time",
                stats.batch_fallbacks,
            ),
        }
        for name, (text, value) in group_counters.items():
            families.append(
                counter(f"sagakit_consumer_{name}", text, ("group",), {(group,): value})
            )
        families.append(
            gauge(
                "sagakit_consumer_assigned_partitions",
                "Partitions this instance owns in its group",
                ("group",),
                {(group,): len(self._assigned)},
            )
        )
        families.append(
            gauge(
                "sagakit_consumer_seconds_since_poll",
                "How long ago this instance's last poll of its group came back (one comes "
                f"back at least every {POLL_TIMEOUT_MS} ms while it consumes)",
                ("group",),
                {(group,): round(self.seconds_since_poll(), 3)},
            )
        )
        lag = await self.lag()
        families.append(
            gauge(
                "sagakit_consumer_lag_records",
                "Records of a partition this instance owns not yet committed by its group "
                "(end offset minus committed offset)",
                ("group", "topic", "partition"),
                {(group, tp.topic, str(tp.partition)): behind for tp, behind in lag.items()},
            )
        )
        families.extend(self._durations.collect())
        families.append(self._stages.family())
        return families

    async def lag(self) -> dict[TopicPartition, int]:
        """Per owned partition: its end offset (the highwater of the last fetch) minus the
        group's committed offset (known here). No broker round trip."""
        consumer, workers = self._consumer, self._workers
        if consumer is None or workers is None:
            return {}
        committed = workers.committed_offsets()
        lag: dict[TopicPartition, int] = {}
        for tp in sorted(self._assigned):
            try:
                end = consumer.highwater(tp)
                if end is None:
                    continue  # nothing fetched yet
                known = committed.get(tp)
                # No record since the assignment: the group's offset is the position still.
                base = known if known is not None else await self._position(consumer, tp)
            except (AssertionError, AttributeError, IllegalStateError, TimeoutError):
                continue  # revoked meanwhile, or its position is still being looked up
            lag[tp] = records_behind(int(end), base)
        return lag

    @staticmethod
    async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
        # Answered from memory once the position is known; not waited for otherwise.
        return int(await asyncio.wait_for(consumer.position(tp), _POSITION_TIMEOUT_S))

    async def dead_letter_sizes(self, topics: Iterable[str]) -> dict[str, int]:
        """Records each of ``topics`` holds (end minus start offsets, over its partitions).

        For the dead-letter topics nobody consumes: two ListOffsets requests, asked at most
        once every ``DLQ_SIZES_MAX_AGE_S`` (the answer in between is the last one).
        """
        asked_at, sizes = self._dlq_sizes
        if time.monotonic() - asked_at < DLQ_SIZES_MAX_AGE_S:
            return sizes
        consumer, producer = self._consumer, self._producer
        if consumer is None or producer is None:
            return sizes
        partitions = [
            TopicPartition(topic, partition)
            for topic in sorted(set(topics))
            for partition in sorted(await producer.partitions_for(topic))
        ]
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        sizes = dict.fromkeys(sorted(set(topics)), 0)
        for tp in partitions:
            sizes[tp.topic] += max(int(ends[tp]) - int(starts[tp]), 0)
        self._dlq_sizes = (time.monotonic(), sizes)
        return sizes

    def _consumer_config(self) -> dict[str, Any]:
        return {
            **kafka_client_options(self._settings),
            "group_id": self.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "rebalance_timeout_ms": REBALANCE_TIMEOUT_MS,
            "fetch_min_bytes": self._settings.consumer_fetch_min_bytes,
            "fetch_max_wait_ms": self._settings.consumer_fetch_max_wait_ms,
            **self._static_membership(),
            **self._consumer_options,
        }

    def _static_membership(self) -> dict[str, str]:
        # An instance id set in the environment (the supervisor and compose set one per
        # instance) stays the same across restarts. Joining as a static member lets a
        # restarted instance take its partitions back at once, instead of the whole group
        # waiting for the dead member's session to expire. The price: a clean stop does not
        # leave the group either, so its partitions wait one session timeout for a new owner.
        if "instance_id" not in self._settings.model_fields_set:
            return {}
        return {"group_instance_id": self._settings.instance_id}

    def _pipeline(self) -> Pipeline:
        settings = self._settings
        return Pipeline(
            group=self.group_id,
            routes=self._routes,
            decode_value=self._decode,
            units=self._units,
            dead_letters=DeadLetterQueue(
                self._producer,
                group=self.group_id,
                retry_base_ms=settings.retry_base_delay_ms,
                retry_max_ms=settings.retry_max_delay_ms,
            ),
            retry=RetryPolicy(
                attempts=settings.retry_attempts,
                base_delay_ms=settings.retry_base_delay_ms,
                max_delay_ms=settings.retry_max_delay_ms,
            ),
            stats=self.stats,
            inbox=self._inbox,
            dedup=self._dedup,
            faults=self._faults,
            instruments=Instruments(self.group_id, self._durations, self._stages),
        )

    async def _poll(self) -> None:
        assert self._consumer is not None and self._workers is not None
        consumer, workers = self._consumer, self._workers
        while True:
            batches: dict[TopicPartition, list[Any]] | None = None
            try:
                batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                self._polled_at = time.monotonic()
                # No await from getmany's return to here: the batches belong to the current
                # assignment. A partition revoked meanwhile is skipped (its records are read
                # again from the committed offset by whoever owns it next).
                for tp, records in batches.items():
                    if records and tp in self._assigned:
                        workers.dispatch(tp, records)
                await workers.commit_due()
            except Exception as error:
                # Authorization or offset errors surface in getmany (the consumer itself
                # recovers from connection problems); a failure after it came back is a bug:
                # its traceback, and the round's records read again. Either way keep polling:
                # a dead poll loop would consume nothing while its process looks alive.
                log.error(
                    "polling %s failed: %r",
                    self.group_id,
                    error,
                    exc_info=error if batches is not None else None,
                )
                if batches is not None:
                    self._read_again(consumer, batches)
                await asyncio.sleep(1.0)

    def _read_again(
        self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, Sequence[Any]]
    ) -> None:
        """Fetch the records of a failed round again: some may never have reached their
        partition's queue, and a later commit would pass them. Those that did are skipped
        the second time (the inbox)."""
        for tp, records in batches.items():
            if records and tp in self._assigned:
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile
                    consumer.seek(tp, records[0].offset)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._assigned = frozenset()
        if self._workers is not None:
            await self._workers.release(revoked)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned = frozenset(assigned)
        self.stats.rebalances += 1
        log.info(
            "group %s assigned %s",
            self.group_id,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing",
        )
