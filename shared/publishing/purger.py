"""The retention purger: deletes expired rows in small batches, off the outbox relay's path.

It runs the purges of ``shared.publishing.retention`` (and any a service adds, such as the order
service's timeline) every ``interval_s``: each table batch by batch until a batch comes back
short, then the next table.

Why a task and a connection of its own
    The purges used to run between the relay's rounds, on the relay's lock connection. A
    purge statement then delayed every publishing round, and one that outlasted the
    connection's command timeout (a large backlog, an unindexed scan, a table lock held by
    someone else) cost the relay its connection and with it its lead: publishing crawled
    while leaders came and went. Here a slow or failing purge costs only the purge: the relay
    never waits for it and never shares a connection with it.

One purger per database, under an advisory lock of its own
    Two purgers would not corrupt anything (each ``DELETE`` takes its own batch), but they
    would compete for the same rows and double the load. So, like the relay, each instance
    tries a session-level advisory lock (its own key, so the relay's leader and the purger's
    are elected independently and usually land in different processes) on a dedicated
    connection, and only the holder purges; the others try again every ``interval_s``. The
    lock lives as long as its connection, so a purger that dies or is cut off loses it by
    itself.

Bounded statements
    The connection sets ``statement_timeout`` and ``lock_timeout``: a batch that cannot finish
    in time (the table locked by a migration, a disk that stalls) is cancelled by the server,
    the table is tried again at the next interval, and the connection, the lock and the other
    tables' purges go on. Batches are small (``shared.publishing.retention.PURGE_BATCH_SIZE``) and
    found through an index, so a batch normally takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import asyncpg
from sqlalchemy.engine import URL

from shared.backoff import backoff_delay
from shared.observability.metrics import Metric, counter, gauge
from shared.publishing.retention import INBOX_PURGE, OUTBOX_PURGE, PURGE_BATCH_SIZE, PurgeStatement
from shared.settings import PlatformSettings
from shared.storage.db import asyncpg_dsn

__all__ = ["DEFAULT_LOCK_KEY", "Purge", "RetentionPurger"]

log = logging.getLogger(__name__)

DEFAULT_LOCK_KEY: Final = zlib.crc32(b"sagakit.retention.purger")

STATEMENT_TIMEOUT_MS: Final = 10_000
"""A batch that takes longer is cancelled by the server; its table waits for the next pass."""
LOCK_TIMEOUT_MS: Final = 2_000
"""A batch that waits this long for a lock (a migration, an operator's LOCK TABLE) gives up."""
_COMMAND_TIMEOUT_S: Final = STATEMENT_TIMEOUT_MS / 1000 + 20
"""The client's own limit, for a server that stopped answering (the server's fires first)."""

_DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
# What a bounded statement answers when it runs out of time: the session is still fine.
_TIMED_OUT = (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError)


@dataclass(frozen=True, slots=True)
class Purge:
    """A table's retention rule and window: rows older than ``older_than`` are deleted."""

    statement: PurgeStatement
    older_than: timedelta

    @property
    def table(self) -> str:
        return self.statement.table


class RetentionPurger:
    """Purges its tables while it holds its lock; one per service process."""

    def __init__(
        self,
        database_url: str | URL,
        purges: Sequence[Purge],
        *,
        interval_s: float = 300.0,
        batch_size: int = PURGE_BATCH_SIZE,
        lock_key: int = DEFAULT_LOCK_KEY,
        name: str = "retention-purger",
    ) -> None:
        if interval_s <= 0 or batch_size < 1:
            raise ValueError("the purge interval must be positive and the batch at least 1")
        self._dsn = asyncpg_dsn(database_url)
        self._purges = tuple(purges)
        self._interval = interval_s
        self._batch_size = batch_size
        self._lock_key = lock_key
        self._name = name
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._is_leader = False
        self.purged: Counter[str] = Counter()
        """Rows deleted, by table."""
        self.timed_out: Counter[str] = Counter()
        """Batches the server cancelled (statement or lock timeout), by table."""
        self.passes = 0
        """Passes over every table completed while leading."""

    @classmethod
    def from_settings(
        cls, settings: PlatformSettings, extra: Sequence[Purge] = ()
    ) -> RetentionPurger:
        """The purger of the platform's tables (and ``extra``) with the settings' windows."""
        purges = [
            Purge(OUTBOX_PURGE, settings.outbox_retention()),
            Purge(INBOX_PURGE, settings.inbox_retention()),
            *extra,
        ]
        return cls(
            settings.database_url,
            purges,
            interval_s=settings.purge_interval_seconds,
            name=f"{settings.service_name}/{settings.instance_id}/purger",
        )

    @property
    def is_leader(self) -> bool:
        """Whether this instance holds the lock and purges (the others stand by)."""
        return self._is_leader

    def metrics(self) -> list[Metric]:
        tables = [purge.table for purge in self._purges]
        return [
            counter(
                "sagakit_retention_purged_rows",
                "Rows deleted by retention, by table",
                ("table",),
                {(table,): self.purged[table] for table in tables},
            ),
            counter(
                "sagakit_retention_purge_timeouts",
                "Purge batches cancelled by the statement or lock timeout, by table",
                ("table",),
                {(table,): self.timed_out[table] for table in tables},
            ),
            gauge(
                "sagakit_retention_purger_leader",
                "1 while this instance purges its service's tables",
                (),
                {(): int(self._is_leader)},
            ),
        ]

    async def start(self) -> None:
        """Start purging in the background; returns at once."""
        if self._task is not None:
            raise RuntimeError(f"{self._name} is already started")
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop after the batch in hand (a batch is bounded by the statement timeout)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STATEMENT_TIMEOUT_MS / 1000 + 5)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._session()
                failures = 0
            except _DATABASE_ERRORS as error:
                failures += 1
                delay = _backoff(failures)
                log.warning("%s: database lost (%r), again in %.1f s", self._name, error, delay)
                await self._sleep(delay)
            except Exception:
                # A purger that dies silently lets the tables grow: log and go on.
                failures += 1
                delay = _backoff(failures)
                log.exception("%s: unexpected error, retrying in %.1f s", self._name, delay)
                await self._sleep(delay)

    async def _session(self) -> None:
        """One lock connection's life: stand by until it holds the lock, then purge."""
        connection: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            command_timeout=_COMMAND_TIMEOUT_S,
            server_settings={
                "application_name": self._name[:63],
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "lock_timeout": str(LOCK_TIMEOUT_MS),
                # A deletion lost in a crash is done again at the next pass.
                "synchronous_commit": "off",
            },
        )
        try:
            while not self._stopping.is_set():
                if await connection.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                    break
                await self._sleep(self._interval)
            else:
                return
            self._is_leader = True
            log.info("%s: purging expired rows every %.0f s", self._name, self._interval)
            while not self._stopping.is_set():
                await self.purge_once(connection)
                await self._sleep(self._interval)
        finally:
            self._is_leader = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)
            if not connection.is_closed():
                connection.terminate()

    async def purge_once(self, connection: asyncpg.Connection) -> None:
        """Every table, batch by batch, until a batch comes back short or times out."""
        for purge in self._purges:
            deleted = 0
            while not self._stopping.is_set():
                try:
                    batch = await purge.statement.run(
                        connection, purge.older_than, self._batch_size
                    )
                except _TIMED_OUT as error:
                    self.timed_out[purge.table] += 1
                    log.warning(
                        "%s: purging %s ran out of time (%r); trying again in %.0f s",
                        self._name,
                        purge.table,
                        error,
                        self._interval,
                    )
                    break
                deleted += batch
                self.purged[purge.table] += batch
                if batch < self._batch_size:
                    break
            if deleted:
                log.info("%s: purged %d rows of %s", self._name, deleted, purge.table)
        self.passes += 1

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _backoff(failures: int) -> float:
    return backoff_delay(min(failures, 10), base_ms=200, max_ms=10_000)
