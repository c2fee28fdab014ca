"""One leader per database: the loop the outbox relay, the retention purger and a service's own
background jobs (the order service's deadline sweeper) each run to elect theirs.

The leader is whoever holds a session-level PostgreSQL advisory lock on a dedicated
connection. The lock lives exactly as long as that connection, so a leader that dies, hangs
up or is cut off (TCP keepalives below) loses it by itself and another instance takes over:
no lease to expire, no clock to trust. Each job uses a key of its own (``lock_key``), so the
jobs are elected independently and usually land in different processes.

The loop: connect, try the lock every ``standby_s`` until it is held (or the loop is asked
to stop), run the job's ``lead(connection)`` until it returns or raises, close the
connection, and start over. A lost database is logged and tried again after a backoff that
grows with the failures since the lock was last taken; any other error is logged with its traceback
and tried again the same way, because a job that dies silently stops its work for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import asyncpg
from sqlalchemy.engine import URL

from shared.backoff import backoff_delay
from shared.storage.db import asyncpg_dsn

__all__ = ["DATABASE_ERRORS", "Lead", "LeaderLoop", "lock_key"]

log = logging.getLogger(__name__)

DATABASE_ERRORS: Final = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
"""What losing the database through asyncpg looks like."""

Lead = Callable[[asyncpg.Connection], Awaitable[None]]
"""A job's work while it leads: given the lock connection, return when asked to stop."""

_KEEPALIVES: Final = {
    # A leader whose host vanished without closing its socket keeps the lock until the
    # server notices: ask it to probe after 10 s and give up after 3 misses, instead of the
    # operating system's default of two hours.
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


def lock_key(name: str) -> int:
    """The advisory lock key of a job: CRC32 of a readable name, stable across releases.

    Advisory locks are scoped to one database and each service has its own, so one key
    elects one leader per service."""
    return zlib.crc32(name.encode())


class LeaderLoop:
    """Elects this process for one job, runs the job's ``lead`` while elected, and retries."""

    def __init__(
        self,
        database_url: str | URL,
        lead: Lead,
        *,
        lock_key: int,
        name: str,
        standby_s: float,
        command_timeout_s: float = 30.0,
        server_settings: Mapping[str, str] | None = None,
        errors: tuple[type[BaseException], ...] = DATABASE_ERRORS,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._lead = lead
        self._lock_key = lock_key
        self._name = name
        self._standby = standby_s
        self._command_timeout = command_timeout_s
        self._server_settings = {
            # Named, so an operator sees in pg_stat_activity which process leads.
            "application_name": name[:63],
            **_KEEPALIVES,
            **(server_settings or {}),
        }
        self._errors = errors
        self.stopping = asyncio.Event()
        """Set when asked to stop: ``lead`` returns once it sees it."""
        self._task: asyncio.Task[None] | None = None
        self._is_leader = False
        self._failures = 0
        """Failures since the lock was last taken: the backoff grows with them."""
        self.leaderships = 0
        """How many times this process took the lead."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def is_leader(self) -> bool:
        """Whether this process holds the lock and runs the job (the others stand by)."""
        return self._is_leader

    def start(self) -> None:
        """Start electing and leading in the background; returns at once."""
        if self._task is not None:
            raise RuntimeError(f"{self._name} is already started")
        self.stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self, timeout_s: float) -> None:
        """Ask ``lead`` to finish and give up the lock; after ``timeout_s``, cancel it."""
        task, self._task = self._task, None
        if task is None:
            return
        self.stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            log.warning("%s: still running after %.0f s, cancelling it", self._name, timeout_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                await self._session()
            except self._errors as error:
                delay = self._next_delay()
                log.warning(
                    "%s: database unreachable or connection lost (%r), retrying in %.1f s",
                    self._name,
                    error,
                    delay,
                )
                await self.sleep(delay)
            except Exception:
                delay = self._next_delay()
                log.exception("%s: unexpected error, retrying in %.1f s", self._name, delay)
                await self.sleep(delay)

    def _next_delay(self) -> float:
        self._failures += 1
        return backoff_delay(min(self._failures, 10), base_ms=200, max_ms=10_000)

    async def _session(self) -> None:
        """One lock connection's life: stand by until leader, then lead."""
        connection: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            # A query that hangs on a half-open connection fails instead, and we reconnect.
            command_timeout=self._command_timeout,
            server_settings=self._server_settings,
        )
        try:
            if await self._wait_for_lock(connection):
                self._is_leader, self._failures = True, 0
                self.leaderships += 1
                await self._lead(connection)
                if connection.is_closed() and not self.stopping.is_set():
                    # The job saw its connection go and returned: the lock went with it.
                    # Backing off like any lost connection gives the standbys the first go
                    # at it, instead of racing them for it at once.
                    raise ConnectionError("the lock connection was lost while leading")
        finally:
            self._is_leader = False
            await _close(connection)

    async def _wait_for_lock(self, connection: asyncpg.Connection) -> bool:
        announced = False
        while not self.stopping.is_set():
            if await connection.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_key):
                return True
            if not announced:
                log.info("%s: another instance leads, standing by", self._name)
                announced = True
            await self.sleep(self._standby)
        return False


async def _close(connection: asyncpg.Connection) -> None:
    """Close gracefully when the server answers, otherwise just drop the socket."""
    try:
        await asyncio.wait_for(connection.close(), 5)
    except asyncio.CancelledError:
        connection.terminate()
        raise
    except Exception:  # a dead connection cannot close politely; either way it is gone
        connection.terminate()
