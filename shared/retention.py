"""Retention of the platform's tables: forget sent outbox rows and old inbox rows.

Both tables grow by one row per event. A sent outbox row is history (Kafka holds the event
now); an inbox row is only needed while Kafka can still redeliver its event. The outbox relay's
leader calls these between rounds (``shared.outbox``), so one process per database purges.

Each call deletes one bounded batch and returns how many rows it deleted: a large backlog is
worked off batch by batch, between publishing rounds, instead of in one long statement that
holds locks and bloats the WAL. Rows are picked by ``ctid`` because neither table has an index
on its timestamp; ``ctid = ANY(ARRAY(...))`` deletes them by a TID scan.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import asyncpg

from shared.db import inbox_table, outbox_table

__all__ = ["PURGE_BATCH_SIZE", "purge_processed_inbox", "purge_sent_outbox"]

PURGE_BATCH_SIZE: Final = 5000

# An unsent row is never deleted, however old: it is an event nobody has published yet.
_PURGE_OUTBOX = (
    f"DELETE FROM {outbox_table.name} WHERE ctid = ANY(ARRAY("
    f"SELECT ctid FROM {outbox_table.name} "
    "WHERE sent_at IS NOT NULL AND sent_at < now() - $1::interval LIMIT $2))"
)
_PURGE_INBOX = (
    f"DELETE FROM {inbox_table.name} WHERE ctid = ANY(ARRAY("
    f"SELECT ctid FROM {inbox_table.name} "
    "WHERE processed_at < now() - $1::interval LIMIT $2))"
)


async def purge_sent_outbox(
    connection: asyncpg.Connection, older_than: timedelta, batch_size: int = PURGE_BATCH_SIZE
) -> int:
    """Delete at most ``batch_size`` outbox rows sent more than ``older_than`` ago."""
    return await _delete(connection, _PURGE_OUTBOX, older_than, batch_size)


async def purge_processed_inbox(
    connection: asyncpg.Connection, older_than: timedelta, batch_size: int = PURGE_BATCH_SIZE
) -> int:
    """Delete at most ``batch_size`` inbox rows processed more than ``older_than`` ago."""
    return await _delete(connection, _PURGE_INBOX, older_than, batch_size)


async def _delete(
    connection: asyncpg.Connection, query: str, older_than: timedelta, batch_size: int
) -> int:
    status: str = await connection.execute(query, older_than, batch_size)
    return int(status.split()[-1])  # "DELETE <count>"
