"""Statements the hot path runs on every record, written so that SQLAlchemy caches them.

SQLAlchemy compiles a statement once per shape and reuses it, but only for constructs with
a cache key, and the PostgreSQL dialect's ``insert()`` (the one with ``on_conflict_do_*``)
has none: every execution compiled it anew, which was a fifth of the order service's CPU
under load. ``insert_unless_present`` builds the same ``INSERT ... ON CONFLICT DO NOTHING``
as a typed ``text()`` statement, which caches like any other, and
``InsertManyUnlessPresent`` inserts many rows in one statement and one round trip, saying
which went in (an ``executemany`` cannot return rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Column, Dialect, Table, Text, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import ARRAY, TypeDecorator, TypeEngine

__all__ = ["InsertManyUnlessPresent", "insert_unless_present", "type_name"]

_DIALECT = PGDialect()  # type: ignore[no-untyped-call]  # only to name column types


def type_name(column: Column[Any]) -> str:
    """The column's type as PostgreSQL spells it, for a ``CAST`` in a ``text()`` statement."""
    return str(column.type.compile(dialect=_DIALECT))


class _JsonText(TypeDecorator[Any]):
    """A JSON value sent as its text: PostgreSQL casts each to ``jsonb``. As a list it must
    stay one-dimensional, which a list of JSON arrays sent as such would not."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value)


def _element_type(column: Column[Any]) -> TypeEngine[Any]:
    return _JsonText() if isinstance(column.type, JSON) else column.type


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


class InsertManyUnlessPresent:
    """``insert_unless_present`` for many rows in one statement and one round trip.

    ``INSERT ... SELECT * FROM unnest(:column, ...) ON CONFLICT (conflict) DO NOTHING
    RETURNING conflict``: ``await insert(connection, rows)`` (one mapping per row, by column
    name) returns the ``conflict`` values of the rows that went in; the others were there.
    """

    def __init__(self, table: Table, columns: Sequence[str], *, conflict: str) -> None:
        for name in (*columns, conflict):
            table.c[name]  # raises KeyError for a column the table does not have
        arrays = ", ".join(f"CAST(:{name} AS {type_name(table.c[name])}[])" for name in columns)
        sql = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {conflict}"
        )
        arrays_of = (
            bindparam(name, type_=ARRAY(_element_type(table.c[name]), dimensions=1))
            for name in columns
        )
        self.statement = text(sql).bindparams(*arrays_of).columns(table.c[conflict])
        self._columns = tuple(columns)

    async def __call__(
        self, connection: AsyncConnection, rows: Sequence[Mapping[str, Any]]
    ) -> set[Any]:
        if not rows:
            return set()
        values = {name: [row[name] for row in rows] for name in self._columns}
        return set((await connection.execute(self.statement, values)).scalars())
