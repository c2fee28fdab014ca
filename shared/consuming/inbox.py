"""Idempotent consumption: "has this consumer group processed this event already?".

Two answers, one durable and one fast:

- ``Inbox.claim`` inserts ``(consumer_group, event_id)`` into the inbox table inside the
  handler's own unit of work. The primary key makes the insert succeed once; the row commits
  or rolls back together with the handler's effects, so a redelivered event is skipped
  exactly when its effects are in the database. This is the truth.
- ``Deduplicator`` asks Redis first, in one round trip, so a redelivery (after a rebalance or
  a crash) is usually skipped without opening a transaction.

Redis is written only *after* the database commit (``remember``), never as a claim before
processing: a claim taken before a handler that then fails (or a process that then dies)
would make the retry look like a duplicate, and the effect would be lost for good. Set after
the commit, the worst case is the reverse (commit done, process dies before ``remember``):
the redelivery misses in Redis and the inbox row catches it. Redis is therefore never
required for correctness: when it is down, ``already_processed`` answers "not known" and
the inbox decides, which is only slower.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Integer, Text, Uuid, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

from shared.consuming.group_lock import TAKE_SQL, GroupLock
from shared.storage.db import UnitOfWork, inbox_table

__all__ = ["Deduplicator", "Inbox"]

log = logging.getLogger(__name__)


# Text, not the PostgreSQL dialect's insert(): SQLAlchemy cannot cache an ON CONFLICT
# statement built with it (no cache key), and compiling it anew for every record was a tenth
# of a busy service's CPU. One statement claims one event or a whole batch.
_CLAIM = text(
    f"INSERT INTO {inbox_table.name} (consumer_group, event_id) "
    "SELECT :group, unnest(CAST(:event_ids AS uuid[])) "
    "ON CONFLICT (consumer_group, event_id) DO NOTHING RETURNING event_id"
).bindparams(bindparam("group", type_=Text), bindparam("event_ids", type_=ARRAY(Uuid)))
# The same claim behind the group's lock, in one round trip instead of two. The lock comes
# first: no row reaches the INSERT before the join has the CTE's one row, which exists only
# once pg_advisory_xact_lock has returned.
_LOCK_AND_CLAIM = text(
    f"WITH locked AS MATERIALIZED ({TAKE_SQL}) "
    f"INSERT INTO {inbox_table.name} (consumer_group, event_id) "
    "SELECT :group, event_id FROM locked, unnest(CAST(:event_ids AS uuid[])) AS event_id "
    "ON CONFLICT (consumer_group, event_id) DO NOTHING RETURNING event_id"
).bindparams(
    bindparam("group", type_=Text),
    bindparam("event_ids", type_=ARRAY(Uuid)),
    bindparam("lock_space", type_=Integer),
    bindparam("lock_group", type_=Integer),
)


class Inbox:
    """The durable record of processed events, one row per (consumer group, event)."""

    async def claim(self, uow: UnitOfWork, group: str, event_id: uuid.UUID) -> bool:
        """Record that ``group`` processes ``event_id`` in ``uow``; False if already recorded.

        Call it first in the unit of work, before the handler's effects. When two instances
        claim the same event at once, the second waits on the first one's transaction and
        then gets False if it committed, True if it rolled back.
        """
        return event_id in await self.claim_all(uow, group, [event_id])

    async def claim_all(
        self,
        uow: UnitOfWork,
        group: str,
        event_ids: Sequence[uuid.UUID],
        *,
        lock: GroupLock | None = None,
    ) -> set[uuid.UUID]:
        """``claim`` for many events in one statement; returns the ones newly claimed. With
        ``lock``, the statement takes the group's lock first (``GroupLock.take``)."""
        # Sorted: two transactions claiming overlapping batches take the row locks in the
        # same order, so they wait for each other instead of deadlocking.
        ids = sorted(set(event_ids))
        values = {"group": group, "event_ids": ids}
        if lock is None:
            result = await uow.session.execute(_CLAIM, values)
        else:
            result = await uow.session.execute(_LOCK_AND_CLAIM, values | lock.key)
        return set(result.scalars())


class Deduplicator:
    """The fast path in Redis: ``SET key 1 NX EX ttl`` after commit, ``EXISTS`` before.

    Every Redis error is logged (at most once per ``log_every_s`` seconds) and swallowed:
    ``already_processed`` then answers False so that the inbox decides. After a failure Redis
    is left alone for ``cooldown_s``, so an outage costs one timeout per cooldown rather than
    one per record.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: int,
        prefix: str = "sagakit:seen",
        timeout_s: float = 1.0,
        cooldown_s: float = 5.0,
        log_every_s: float = 30.0,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._prefix = prefix
        # A Redis that hangs must not stall consumption any more than one that refuses.
        self._timeout = timeout_s
        self._cooldown = cooldown_s
        self._down_until = -float("inf")
        self._log_every = log_every_s
        self._last_logged = -float("inf")
        self._suppressed = 0

    def key(self, group: str, event_id: uuid.UUID) -> str:
        """The Redis key that marks ``event_id`` as processed by ``group``."""
        return f"{self._prefix}:{group}:{event_id}"

    async def already_processed(self, group: str, event_id: uuid.UUID) -> bool:
        """True if Redis knows ``group`` processed ``event_id``; False if not or if unsure."""
        if self._cooling_down():
            return False
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._redis.exists(self.key(group, event_id)))
        except (RedisError, OSError, TimeoutError) as error:
            self._failed("check", error)
            return False

    async def remember(self, group: str, event_id: uuid.UUID) -> None:
        """Mark ``event_id`` processed by ``group``; call only after the database commit."""
        await self.remember_all(group, [event_id])

    async def processed_among(self, group: str, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """The ones of ``event_ids`` Redis knows ``group`` processed, in one round trip."""
        if self._cooling_down() or not event_ids:
            return set()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event_id in event_ids:
                        pipe.exists(self.key(group, event_id))
                    found = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            self._failed("check", error)
            return set()
        return {event_id for event_id, hit in zip(event_ids, found, strict=True) if hit}

    async def remember_all(self, group: str, event_ids: Sequence[uuid.UUID]) -> None:
        """``remember`` many events in one round trip; call only after the database commit."""
        if self._cooling_down() or not event_ids:
            return
        try:
            async with asyncio.timeout(self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for event_id in event_ids:
                        pipe.set(self.key(group, event_id), 1, nx=True, ex=self._ttl)
                    await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            self._failed("remember", error)

    def _cooling_down(self) -> bool:
        return time.monotonic() < self._down_until

    def _failed(self, action: str, error: Exception) -> None:
        now = time.monotonic()
        self._down_until = now + self._cooldown
        # While Redis is down every record fails here: one line per interval, not per record.
        if now - self._last_logged < self._log_every:
            self._suppressed += 1
            return
        log.warning(
            "redis unavailable, the inbox table decides alone (%s failed: %r; %d similar "
            "failures not logged)",
            action,
            error,
            self._suppressed,
        )
        self._last_logged = now
        self._suppressed = 0
