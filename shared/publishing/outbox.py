"""The outbox relay: publishes committed outbox rows to Kafka, in order, at least once.

Units of work write events as rows of the outbox table (``shared.storage.db``); the relay reads the
oldest unsent rows, sends them with the idempotent producer, waits for Kafka's
acknowledgements and only then marks them sent. A crash between the acknowledgement and the
UPDATE republishes those rows on restart: delivery is at least once, and consumers skip the
duplicates by ``event_id`` (``shared.consuming.inbox``).

One leader per database
    Per-key order needs one publisher at a time: two relays reading the same backlog would
    race, and one could publish an order's second event before the other publishes its
    first. Each relay therefore runs the platform's leader loop
    (``shared.storage.leadership``): a session-level PostgreSQL advisory lock on a dedicated
    connection, taken before it publishes anything; the others stand by, trying the lock every
    ``standby_retry_s``. A leader that dies, hangs up or is cut off from the database loses the
    lock by itself, and a standby takes over. We chose this over partitioning
    the outbox by key (each instance owning some keys) because it needs no coordination of
    key ranges and no rebalancing when instances come and go; its price is that one process
    per service publishes, which at hundreds of rows per round is far from the bottleneck.
    The leader does all its reads and writes on the lock connection: if it loses the lock it
    cannot mark anything sent either. That connection must be a real server session (direct,
    or a pooler in session mode): a transaction-mode pooler would lose the lock and the LISTEN.

Order across rounds, and no partition waiting for another
    Rows are read in ``id`` order, and each partition's oldest rows go to Kafka as one batch,
    at most one batch in flight per partition (``shared.publishing.outbox_sending``): a batch that
    fails, or is not acknowledged yet, holds its partition's later rows back in the outbox
    until it is stored, so a partition never gets its rows out of order, even when aiokafka
    expires a batch whose partition has no leader. A round waits for no batch: it marks what
    Kafka acknowledged since the last round (one UPDATE), hands every partition without a
    batch in flight its next rows, and the next acknowledgement wakes the next round. A
    partition without a leader (or refused with NotEnoughReplicas) therefore delays only its
    own rows; once it has waited longer than a healthy acknowledgement takes, rounds read on
    past its backlog (up to ``_PAGES_PER_ROUND`` pages) to find the other partitions' rows.
    A failed batch's partition backs off on its own. A batch not acknowledged within
    ``ack_timeout_s`` is logged and counted as a failed round, and stays in flight: it is
    never sent a second time beside itself.

Refused for good
    A row the broker refuses on every try (larger than it takes) is dead-lettered to its
    topic's ``-dlq`` with the ``dlq.*`` headers instead of holding its partition up for ever,
    and its ``refusal`` column says why. Should the dead-letter topic refuse it too, the row
    keeps its ``refusal`` and no ``sent_at``: it is skipped, never purged, and the outbox
    keeps the only copy for an operator to deal with.

Waking up
    Each unit of work that emitted rows runs ``pg_notify`` in its transaction, delivered at
    commit; the leader LISTENs on its connection and publishes at once. When the leader runs
    in the same process, the unit of work calls ``wake`` after its commit instead. It also
    polls every ``poll_interval_s`` in case a notification was lost (a reconnect, a row
    written by hand). Kafka's answers wake it too, to mark rows sent; such a round reads the
    outbox only when the last read left rows behind (their partition had a batch in flight,
    or its batch was full) or a batch failed: an answer alone says nothing about rows
    committed since, and at a few rows a second that read was a round trip for nothing per
    row.

Trace context
    A row's ``traceparent`` (its own column) goes out as the record's header. When spans are
    recorded (``shared.observability.tracing``) the relay publishes each row in a producer span of
    that trace, and the header names that span instead.

Retention
    The relay does not purge: ``shared.publishing.purger`` deletes sent rows on a connection and a
    task of its own, so that a slow purge never delays a round nor costs the lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.observability.metrics import Metric, counter, gauge, histogram
from shared.observability.stages import StageClock
from shared.publishing.outbox_sending import PartitionSender
from shared.settings import PlatformSettings
from shared.storage.db import OUTBOX_CHANNEL, outbox_table
from shared.storage.leadership import LeaderLoop, lock_key

__all__ = [
    "DEFAULT_LOCK_KEY",
    "ROUNDS_GIVEN_UP_AFTER",
    "OutboxRelay",
    "RelayStats",
    "RoundStuck",
    "backlog_metrics",
]

log = logging.getLogger(__name__)

DEFAULT_LOCK_KEY: Final = lock_key("sagakit.outbox.relay")

_TABLE = outbox_table.name
# A row Kafka refused for good and whose dead-letter topic refused too keeps its refusal and
# no sent_at: the outbox holds the only copy, so retention never deletes it.
_SELECT_UNSENT = (
    f"SELECT id, topic, key, value, headers, traceparent, created_at FROM {_TABLE} "
    "WHERE sent_at IS NULL AND refusal IS NULL AND id > $1 AND id <= $2 ORDER BY id LIMIT $3"
)
# How many pages of ``batch_size`` unsent rows a round reads at most, looking past the rows of
# partitions that wait: a stalled partition's backlog deeper than this hides the others' rows
# until it shrinks (at 500 rows a page, 10,000 rows).
_PAGES_PER_ROUND: Final = 20
_LAST_ID: Final = 2**63 - 1
_LAST_UNSENT = f"SELECT coalesce(max(id), 0) FROM {_TABLE} WHERE sent_at IS NULL"
_MARK_SENT = f"UPDATE {_TABLE} SET sent_at = now() WHERE id = ANY($1::bigint[])"
_MARK_DEAD_LETTERED = f"UPDATE {_TABLE} SET sent_at = now(), refusal = $2 WHERE id = $1"
_MARK_REFUSED = f"UPDATE {_TABLE} SET refusal = $2 WHERE id = $1"

# Both halves read the partial index of unsent rows; the oldest is the one of lowest id.
_BACKLOG = text(
    f"SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - ("
    f"SELECT created_at FROM {_TABLE} WHERE sent_at IS NULL ORDER BY id LIMIT 1)), 0) "
    f"FROM {_TABLE} WHERE sent_at IS NULL"
)
_BACKLOG_TIMEOUT_S = 2.0

_COMMAND_TIMEOUT_S = 30.0
ROUNDS_GIVEN_UP_AFTER = 4
"""Acknowledgement timeouts after which a relay round that has not ended is given up."""


class RoundStuck(RuntimeError):
    """A relay round did not end in time: a call in it hung (``OutboxRelay._bounded_round``)."""


@dataclass(frozen=True, slots=True)
class _Round:
    """What a round did: whether to go again at once, whether Kafka failed some of it, and
    how many unsent rows it saw."""

    again: bool
    failed: bool
    unsent: int


@dataclass(slots=True)
class RelayStats:
    """Counters for logs, metrics and tests."""

    published: int = 0
    dead_lettered: int = 0
    rounds: int = 0
    reads: int = 0  # SELECTs of unsent rows (pages), each a round trip to the database
    failed_rounds: int = 0
    leaderships: int = 0


class OutboxRelay:
    """Publishes the outbox of one database; start one per service process.

    The producer must be started by the caller, who also stops it after ``stop()``: the relay
    shares it (the consumer runner sends dead letters with the same one).
    """

    def __init__(
        self,
        database_url: str | URL,
        producer: AIOKafkaProducer,
        *,
        poll_interval_s: float = 0.5,
        batch_size: int = 500,
        ack_timeout_s: float = 30.0,
        standby_retry_s: float = 1.0,
        lock_key: int = DEFAULT_LOCK_KEY,
        name: str = "outbox-relay",
    ) -> None:
        self._producer = producer
        self._poll_interval = poll_interval_s
        self._batch_size = batch_size
        self._ack_timeout = ack_timeout_s
        self._name = name
        self._wake = asyncio.Event()
        # Why the next round reads the outbox: rows were committed since the last read (a
        # notification, a wake, the poll), or that read left some unsent for later.
        self._committed = True
        self._left_behind = False
        self._leadership = LeaderLoop(
            database_url,
            self._lead,
            lock_key=lock_key,
            name=name,
            standby_s=standby_retry_s,
            command_timeout_s=_COMMAND_TIMEOUT_S,
            # Marking rows sent need not wait for the disk: should PostgreSQL lose the last
            # marks in a crash, those rows are published again, and consumers skip copies.
            server_settings={"synchronous_commit": "off"},
        )
        self._stopping = self._leadership.stopping
        self.stats = RelayStats()
        self._publish_seconds = histogram(
            "sagakit_outbox_publish_duration_seconds",
            "Time from handing an outbox row to the producer to Kafka's acknowledgement",
        )
        self._stages = StageClock(
            "sagakit_outbox_stage_seconds",
            "Time from writing an outbox row to its record's stage (sent: handed to the "
            "producer; acknowledged: stored by Kafka)",
            ("topic", "stage"),
        )
        self._sender = PartitionSender(
            producer,
            name=name,
            publish_seconds=self._publish_seconds,
            stages=self._stages,
            on_answer=self._wake.set,
        )

    @classmethod
    def from_settings(
        cls, settings: PlatformSettings, producer: AIOKafkaProducer, **options: Any
    ) -> OutboxRelay:
        """A relay for ``settings.database_url`` with the settings' poll interval."""
        options.setdefault("poll_interval_s", settings.outbox_poll_interval_ms / 1000)
        options.setdefault("name", f"{settings.service_name}/{settings.instance_id}")
        return cls(settings.database_url, producer, **options)

    @property
    def name(self) -> str:
        """Names this relay in logs and, as ``application_name``, in ``pg_stat_activity``."""
        return self._name

    @property
    def is_leader(self) -> bool:
        """Whether this relay holds the lock and publishes (the others stand by)."""
        return self._leadership.is_leader

    def metrics(self) -> list[Metric]:
        """The relay's counters, leadership and publish latency as metric families."""
        stats = self.stats
        families: list[Metric] = [
            counter(
                "sagakit_outbox_published",
                "Outbox rows published to Kafka",
                (),
                {(): stats.published},
            ),
            gauge(
                "sagakit_outbox_leader",
                "1 while this instance's relay publishes its service's outbox",
                (),
                {(): int(self.is_leader)},
            ),
        ]
        families.extend(self._publish_seconds.collect())
        families.append(self._stages.family())
        return families

    async def start(self) -> None:
        """Start relaying in the background; returns at once."""
        self._leadership.start()

    async def stop(self, timeout_s: float | None = None) -> None:
        """Finish the round in hand, publish what is committed already, give up the lead.

        After ``timeout_s`` (default: the acknowledgement timeout plus a margin) the round is
        cancelled instead; rows it had not marked sent are published again by the next
        leader, which is at-least-once, not a loss.
        """
        self._stopping.set()
        self._wake.set()
        await self._leadership.stop(self._ack_timeout + 5 if timeout_s is None else timeout_s)

    async def _lead(self, connection: asyncpg.Connection) -> None:
        """While leading: a round whenever a commit or an answer from Kafka wakes it."""
        self.stats.leaderships += 1
        log.info("%s: leading the outbox relay", self._name)
        self._committed = True  # whatever the last leader left
        connection.add_termination_listener(lambda _: self._wake.set())
        await connection.add_listener(OUTBOX_CHANNEL, self._on_notify)
        try:
            while not self._stopping.is_set():
                if connection.is_closed():
                    raise asyncpg.ConnectionDoesNotExistError("the relay's lock connection closed")
                # Cleared before reading: a commit or an acknowledgement that lands during
                # the round wakes the next one.
                self._wake.clear()
                if not (await self._bounded_round(connection)).again:
                    await self._wait_for_work()
            await self._drain(connection)
        finally:
            # What was in flight is the next leader's to publish again.
            self._sender.forget()

    async def _bounded_round(self, connection: asyncpg.Connection) -> _Round:
        """A round, given up after ``ROUNDS_GIVEN_UP_AFTER`` acknowledgement timeouts: every
        call in it is bounded (the database's command timeout, Kafka's acknowledgement
        timeout), so one that has not returned by then never will. Seen once in the chaos
        smoke test: the broker killed a second after the process started, and its relay went
        silent for good, no round ending and no batch overdue. Leading again (the leader
        loop logs why, with the traceback of where the round was) starts from the database's
        unsent rows; what was in flight is sent again, which consumers' inboxes absorb."""
        limit = ROUNDS_GIVEN_UP_AFTER * self._ack_timeout
        try:
            return await asyncio.wait_for(self._round(connection), limit)
        except TimeoutError:
            raise RoundStuck(f"{self._name}: a round did not end within {limit:.0f} s") from None

    async def _drain(self, connection: asyncpg.Connection) -> None:
        """Stopping: publish what is committed already (the consumers drained just before),
        so that a restart does not leave a backlog waiting for the next leader; give up at
        the first failure, or after the acknowledgement timeout. Rows committed meanwhile are
        the next leader's."""
        deadline = time.monotonic() + self._ack_timeout
        last: int = await connection.fetchval(_LAST_UNSENT)
        while (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            outcome = await self._round(connection, upto=last)
            if outcome.failed or (outcome.unsent == 0 and self._sender.in_flight == 0):
                return
            if not outcome.again:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(left, self._poll_interval))

    async def _round(self, connection: asyncpg.Connection, upto: int = _LAST_ID) -> _Round:
        """Mark what Kafka acknowledged since the last round, then hand each partition that
        has no batch in flight its oldest unsent rows; wait for nothing (see the module
        docstring of ``shared.publishing.outbox_sending``)."""
        settled = self._sender.settle()
        if settled.acknowledged:
            await connection.execute(_MARK_SENT, settled.acknowledged)
            self.stats.published += len(settled.acknowledged)
        failed = settled.failed > 0
        for row, error in settled.refused:
            outcome = await self._sender.dead_letter(row, error, self._ack_timeout)
            if outcome is None:
                failed = True
                continue
            mark = _MARK_DEAD_LETTERED if outcome.sent else _MARK_REFUSED
            await connection.execute(mark, row["id"], outcome.reason)
            self.stats.dead_lettered += 1
        failed = self._sender.overdue(self._ack_timeout) > 0 or failed
        if failed:
            self.stats.failed_rounds += 1
        if failed or settled.refused:
            self._left_behind = True  # those partitions' rows are to be read again
        if not (self._committed or self._left_behind or upto != _LAST_ID):
            return _Round(again=False, failed=failed, unsent=0)  # an answer alone: no read
        return await self._hand_out(connection, upto, failed)

    async def _hand_out(self, connection: asyncpg.Connection, upto: int, failed: bool) -> _Round:
        """Read the oldest unsent rows (up to ``upto``) and hand them to the free partitions."""
        # Cleared before reading: a commit that lands during the read wakes the next one.
        self._committed = False
        # Page on past the rows of partitions that wait, once one of them is stalled (a batch
        # long unanswered, a backoff): its backlog must not hide the other partitions' rows.
        # While every partition answers within milliseconds one page is enough, as the next
        # answer starts the next round.
        handed = unsent = waiting = 0
        after = 0
        for _ in range(_PAGES_PER_ROUND):
            rows = await connection.fetch(_SELECT_UNSENT, after, upto, self._batch_size)
            self.stats.reads += 1
            unsent += len(rows)
            if rows:
                handout = await self._sender.send(rows)
                handed += handout.handed
                waiting += handout.waiting
            full = len(rows) == self._batch_size  # more may lie beyond this page
            if not full or handed >= self._batch_size:
                break
            if not self._sender.stalled():
                break
            after = rows[-1]["id"]
        self._left_behind = waiting > 0 or full
        if handed:
            self.stats.rounds += 1
        # Round again at once only when this round stopped handing out rows for want of room
        # (a full round, or the page limit); otherwise the next answer or commit wakes it.
        again = handed > 0 and unsent >= self._batch_size
        return _Round(again=again, failed=failed, unsent=unsent)

    def wake(self) -> None:
        """Publish now: rows were committed (what a notification on the channel says)."""
        self._committed = True
        self._wake.set()

    def _on_notify(self, *_: object) -> None:
        self.wake()

    async def _wait_for_work(self) -> None:
        # Until a commit, an answer from Kafka, a partition's backoff ending, or the poll.
        retry = self._sender.next_retry_in()
        timeout = self._poll_interval if retry is None else min(retry, self._poll_interval)
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            self._committed = True  # the poll: a notification may have been lost


async def backlog_metrics(engine: AsyncEngine) -> list[Metric]:
    """The outbox's unsent rows and the age of the oldest, from one indexed query.

    Every instance of a service reports the same backlog (they share the database); none
    when the database does not answer within a scrape's patience.
    """
    try:
        async with asyncio.timeout(_BACKLOG_TIMEOUT_S), engine.connect() as connection:
            unsent, oldest = (await connection.execute(_BACKLOG)).one()
    except Exception as error:  # /metrics answers anyway; the backlog is missing from it
        log.warning("outbox backlog not measured: %r", error)
        return []
    return [
        gauge("sagakit_outbox_unsent_rows", "Outbox rows not yet published", (), {(): unsent}),
        gauge(
            "sagakit_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unsent outbox row (0 when none)",
            (),
            {(): float(oldest)},
        ),
    ]
