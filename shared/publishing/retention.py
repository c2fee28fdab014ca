"""What retention deletes: one bounded batch of expired rows per statement, read by an index.

The platform's tables grow by one row per event. A sent outbox row is history (Kafka holds the
event now); an inbox row is only needed while Kafka can still redeliver its event. A service
may add tables of its own (the order service's timeline). Each table's rule is a
``PurgeStatement``; ``shared.publishing.purger`` runs them, off the relay's path.

Each statement deletes at most one batch and says how many rows it deleted: a large backlog is
worked off batch by batch instead of in one long statement that holds locks and bloats the
WAL. The batch is found through an index on the row's timestamp (platform migration v4:
``sagakit_outbox_sent_at``, partial on sent rows, and ``sagakit_inbox_processed_at``), oldest
first, so finding it costs the batch, not the table; its rows are then deleted by ``ctid``
(a TID scan), in the same statement and snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import asyncpg

from shared.storage.db import inbox_table, outbox_table

__all__ = [
    "INBOX_PURGE",
    "OUTBOX_PURGE",
    "PURGE_BATCH_SIZE",
    "PurgeStatement",
    "purge_processed_inbox",
    "purge_sent_outbox",
]

PURGE_BATCH_SIZE: Final = 1000
"""Rows per statement: small enough to finish well inside the purger's statement timeout on a
busy disk, large enough that a day of a busy service is a few thousand statements."""


@dataclass(frozen=True, slots=True)
class PurgeStatement:
    """One table's retention rule as a ``DELETE`` of at most ``$2`` rows older than ``$1``."""

    table: str
    sql: str

    async def run(
        self, connection: asyncpg.Connection, older_than: timedelta, batch_size: int
    ) -> int:
        """Delete one batch; return how many rows went."""
        status: str = await connection.execute(self.sql, older_than, batch_size)
        return int(status.split()[-1])  # "DELETE <count>"


# An unsent row is never deleted, however old: it is an event nobody has published yet.
OUTBOX_PURGE: Final = PurgeStatement(
    outbox_table.name,
    f"DELETE FROM {outbox_table.name} WHERE ctid = ANY(ARRAY("
    f"SELECT ctid FROM {outbox_table.name} "
    "WHERE sent_at IS NOT NULL AND sent_at < now() - $1::interval "
    "ORDER BY sent_at LIMIT $2))",
)
INBOX_PURGE: Final = PurgeStatement(
    inbox_table.name,
    f"DELETE FROM {inbox_table.name} WHERE ctid = ANY(ARRAY("
    f"SELECT ctid FROM {inbox_table.name} "
    "WHERE processed_at < now() - $1::interval ORDER BY processed_at LIMIT $2))",
)


async def purge_sent_outbox(
    connection: asyncpg.Connection, older_than: timedelta, batch_size: int = PURGE_BATCH_SIZE
) -> int:
    """Delete at most ``batch_size`` outbox rows sent more than ``older_than`` ago."""
    return await OUTBOX_PURGE.run(connection, older_than, batch_size)


async def purge_processed_inbox(
    connection: asyncpg.Connection, older_than: timedelta, batch_size: int = PURGE_BATCH_SIZE
) -> int:
    """Delete at most ``batch_size`` inbox rows processed more than ``older_than`` ago."""
    return await INBOX_PURGE.run(connection, older_than, batch_size)
