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
    runs the platform's leader loop (``shared.storage.leadership``) with a key of its own, so
    the relay's leader and the purger's are elected independently and usually land in
    different processes; only the leader purges, the others try again every ``interval_s``.

Bounded statements
    The connection sets ``statement_timeout`` and ``lock_timeout``: a batch that cannot finish
    in time (the table locked by a migration, a disk that stalls) is cancelled by the server,
    the table is tried again at the next interval, and the connection, the lock and the other
    tables' purges go on. Batches are small (``shared.publishing.retention.PURGE_BATCH_SIZE``) and
    found through an index, so a batch normally takes milliseconds.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import asyncpg
from sqlalchemy.engine import URL

from shared.observability.metrics import Metric, counter, gauge
from shared.publishing.retention import INBOX_PURGE, OUTBOX_PURGE, PURGE_BATCH_SIZE, PurgeStatement
from shared.settings import PlatformSettings
from shared.storage.leadership import LeaderLoop, lock_key

__all__ = ["DEFAULT_LOCK_KEY", "Purge", "RetentionPurger"]

log = logging.getLogger(__name__)

DEFAULT_LOCK_KEY: Final = lock_key("sagakit.retention.purger")

STATEMENT_TIMEOUT_MS: Final = 10_000
"""A batch that takes longer is cancelled by the server; its table waits for the next pass."""
LOCK_TIMEOUT_MS: Final = 2_000
"""A batch that waits this long for a lock (a migration, an operator's LOCK TABLE) gives up."""
_COMMAND_TIMEOUT_S: Final = STATEMENT_TIMEOUT_MS / 1000 + 20
"""The client's own limit, for a server that stopped answering (the server's fires first)."""

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
        self._purges = tuple(purges)
        self._interval = interval_s
        self._batch_size = batch_size
        self._name = name
        self._leadership = LeaderLoop(
            database_url,
            self._lead,
            lock_key=lock_key,
            name=name,
            standby_s=interval_s,
            command_timeout_s=_COMMAND_TIMEOUT_S,
            server_settings={
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "lock_timeout": str(LOCK_TIMEOUT_MS),
                # A deletion lost in a crash is done again at the next pass.
                "synchronous_commit": "off",
            },
        )
        self._stopping = self._leadership.stopping
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
        return self._leadership.is_leader

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
                {(): int(self.is_leader)},
            ),
        ]

    async def start(self) -> None:
        """Start purging in the background; returns at once."""
        self._leadership.start()

    async def stop(self) -> None:
        """Stop after the batch in hand (a batch is bounded by the statement timeout)."""
        await self._leadership.stop(STATEMENT_TIMEOUT_MS / 1000 + 5)

    async def _lead(self, connection: asyncpg.Connection) -> None:
        log.info("%s: purging expired rows every %.0f s", self._name, self._interval)
        while not self._stopping.is_set():
            await self.purge_once(connection)
            await self._leadership.sleep(self._interval)

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
