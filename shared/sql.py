"""Statements the hot path runs on every record, written so that SQLAlchemy caches them.

SQLAlchemy compiles a statement once per shape and reuses it, but only for constructs with
a cache key, and the PostgreSQL dialect's ``insert()`` (the one with ``on_conflict_do_*``)
has none: every execution compiled it anew, which was a fifth of the order service's CPU
under load. ``insert_unless_present`` builds the same ``INSERT ... ON CONFLICT DO NOTHING``
as a typed ``text()`` statement, which caches like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, TextClause, bindparam, text
from sqlalchemy.sql.selectable import TextualSelect

__all__ = ["insert_unless_present"]


def insert_unless_present(
    table: Table,
    columns: Sequence[str],
    *,
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> TextClause | TextualSelect:
    """``INSERT INTO table (columns) VALUES (:column, ...) ON CONFLICT (conflict) DO NOTHING``.

    Execute it with one value per column, by name; values are converted by the columns'
    types (JSONB, UUID, NUMERIC...) as with ``insert()``. With ``returning``, the inserted
    row's columns come back typed too, and no row comes back when it was already there.
    """
    for name in (*columns, *conflict, *returning):
        table.c[name]  # raises KeyError for a column the table does not have
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(f':{name}' for name in columns)}) "
        f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    )
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    statement = text(sql).bindparams(
        *(bindparam(name, type_=table.c[name].type) for name in columns)
    )
    if returning:
        return statement.columns(*(table.c[name] for name in returning))
    return statement
