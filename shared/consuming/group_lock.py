"""One transaction at a time per consumer group: the group's transaction-scoped advisory lock.

Every transaction of the consume pipeline (``shared.consuming.pipeline``) takes it first,
before any row lock: the committer's, which holds the runs of several partitions, and a run
of one record's (a run taken one record at a time after it failed). Handlers lock the rows
they touch (balances, stocks) in the order of their events, so two transactions of one
group in flight at once may lock the same rows in opposite orders and deadlock, each deadlock
costing PostgreSQL's ``deadlock_timeout`` (1 s) and an aborted transaction, which is then
taken one record at a time: more transactions, more deadlocks. Queued behind one lock taken
before anything else, they cannot. Groups never wait for each other: each has its own key.
"""

from __future__ import annotations

import zlib

from sqlalchemy import Integer, bindparam, text

from shared.storage.db import UnitOfWork

__all__ = ["TAKE_SQL", "GroupLock"]

# The two-key form: its keys never meet the one-key locks (the outbox relay's leadership).
TAKE_SQL = "SELECT pg_advisory_xact_lock(:lock_space, :lock_group)"
_TAKE = text(TAKE_SQL).bindparams(
    bindparam("lock_space", type_=Integer), bindparam("lock_group", type_=Integer)
)


def _int4(name: str) -> int:
    """A stable signed 32-bit key for ``name`` (what an advisory lock key holds)."""
    unsigned = zlib.crc32(name.encode())
    return unsigned - (1 << 32) if unsigned >= 1 << 31 else unsigned


_LOCK_SPACE = _int4("sagakit.batches")


class GroupLock:
    """The advisory lock of consumer group ``group``, held until the transaction ends."""

    def __init__(self, group: str) -> None:
        self.key = {"lock_space": _LOCK_SPACE, "lock_group": _int4(group)}
        """The lock's two keys, as the parameters of ``_TAKE`` (and of the inbox's claim,
        which takes the lock in its own statement: ``shared.consuming.inbox``)."""

    async def take(self, uow: UnitOfWork) -> None:
        """Wait for the group's other transactions; call first in the unit of work."""
        await uow.session.execute(_TAKE, self.key)
