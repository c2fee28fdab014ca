"""The database side of the platform: engine, the platform's own tables, the unit of work.

A handler or a route never talks to Kafka. It changes its state and *emits* events inside one
``UnitOfWork``; the events become rows of the outbox table in the same transaction, so either
both the state change and its events are committed or neither is. The outbox relay
(``shared.publishing.outbox``) publishes those rows afterwards.

The platform's tables (outbox and inbox) live here, on ``platform_metadata``, because both
the unit of work and the relay read and write them: one definition, no import cycle. A
service creates them with ``create_platform_tables`` (or includes ``platform_metadata`` in its
migrations) next to its own tables.
"""

from __future__ import annotations

import base64
import functools
import uuid
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    TextClause,
    Uuid,
    bindparam,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.selectable import TextualSelect

from shared.contracts.events import Event, Record
from shared.contracts.topics import Topics, encode
from shared.observability.tracing import TRACEPARENT, traceparent_for
from shared.storage.sql import type_name

__all__ = [
    "OUTBOX_CHANNEL",
    "LocalRelay",
    "ReadFrom",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "asyncpg_dsn",
    "create_platform_tables",
    "decode_headers",
    "encode_headers",
    "inbox_table",
    "make_engine",
    "outbox_table",
    "platform_metadata",
]

# The channel the unit of work notifies and the relay listens on. PostgreSQL scopes
# notifications to one database, so one fixed name serves every service.
OUTBOX_CHANNEL = "sagakit_outbox"

platform_metadata = MetaData()

outbox_table = Table(
    "sagakit_outbox",
    platform_metadata,
    # The identity is the publication order: rows are inserted in emission order at commit.
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("topic", Text, nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=False),
    # [[name, base64(value)], ...]: header values are bytes, JSON has no bytes type.
    Column("headers", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    # The W3C trace context the record goes out with (shared.observability.tracing); the relay adds
    # it to the headers, or publishes the row in a span of that trace when spans are recorded.
    Column("traceparent", Text, nullable=True),
    # Why Kafka refused the row for good (too large), and where it went instead; set by the
    # relay (shared.publishing.outbox), null for every row Kafka took.
    Column("refusal", Text, nullable=True),
)
# The relay's only query: the oldest unsent rows. A partial index stays as small as the backlog.
Index(
    "sagakit_outbox_unsent",
    outbox_table.c.id,
    postgresql_where=outbox_table.c.sent_at.is_(None),
)

inbox_table = Table(
    "sagakit_inbox",
    platform_metadata,
    Column("consumer_group", Text, primary_key=True),
    Column("event_id", Uuid, primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What retention reads (shared.publishing.retention): the oldest sent outbox rows and the
# oldest inbox rows, a batch at a time. Unsent rows are never purged, so the outbox's index
# leaves them out.
Index(
    "sagakit_outbox_sent_at",
    outbox_table.c.sent_at,
    postgresql_where=outbox_table.c.sent_at.isnot(None),
)
Index("sagakit_inbox_processed_at", inbox_table.c.processed_at)


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def _plain_on_loopback(url: URL, ssl_option: str) -> URL:
    """``url``, asking for no TLS when it names the loopback and says nothing about TLS.

    asyncpg's default (``prefer``) negotiates TLS wherever the server offers it, and Debian's
    PostgreSQL offers it with a snake-oil certificate: on the loopback that bought nothing and
    cost about a quarter of a busy service's CPU. A URL that names ``ssl`` or ``sslmode``
    keeps exactly what it asks for, so real deployments choose for themselves.
    """
    if url.host not in _LOOPBACK_HOSTS or {"ssl", "sslmode"} & set(url.query):
        return url
    return url.update_query_dict({ssl_option: "disable"})


def make_engine(url: str | URL, **options: Any) -> AsyncEngine:
    """An async engine for ``url`` (``postgresql+asyncpg://...``); no TLS on the loopback.

    No ``pool_pre_ping``: it cost three round trips per checkout, on every transaction. A
    connection that died with its server fails its first statement instead, SQLAlchemy then
    invalidates the whole pool, and the failure classifier (``shared.consuming.failures``) retries
    an unavailable database without limit. ``options`` go to ``create_async_engine`` unchanged.
    """
    parsed = make_url(url) if isinstance(url, str) else url
    return create_async_engine(_plain_on_loopback(parsed, "ssl"), **options)


def asyncpg_dsn(url: str | URL) -> str:
    """The libpq-style DSN for a raw ``asyncpg.connect`` from an SQLAlchemy URL.

    The relay needs a connection of its own (LISTEN and a session advisory lock), which
    SQLAlchemy's pool cannot give; this keeps one configured URL for both (and the same
    choice of TLS: asyncpg's DSN spells it ``sslmode``).
    """
    parsed = make_url(url) if isinstance(url, str) else url
    plain = _plain_on_loopback(parsed, "sslmode").set(drivername="postgresql")
    if "host" in plain.query and not plain.host and plain.port is not None:
        # A Unix socket's directory in the query and its port in the authority: SQLAlchemy
        # joins the two, asyncpg would look up the empty host. Both in the query, it does not.
        plain = plain.update_query_dict({"port": str(plain.port)})._replace(port=None)
    return plain.render_as_string(hide_password=False)


async def create_platform_tables(engine: AsyncEngine) -> None:
    """Create the outbox and inbox tables (and their index) where they do not exist yet."""
    async with engine.begin() as connection:
        await connection.run_sync(platform_metadata.create_all)


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> list[list[str]]:
    """Record headers as the outbox stores them (JSON-safe, lossless)."""
    return [[name, base64.b64encode(value).decode("ascii")] for name, value in headers]


def decode_headers(stored: Sequence[Sequence[str]]) -> list[tuple[str, bytes]]:
    """The inverse of ``encode_headers``."""
    return [(name, base64.b64decode(value)) for name, value in stored]


def _outbox_row(record: Record) -> dict[str, Any]:
    headers = [header for header in record.headers if header[0] != TRACEPARENT]
    traceparent = next((v.decode() for n, v in record.headers if n == TRACEPARENT), None)
    return {
        "topic": record.topic,
        "key": record.key,
        "value": record.value,
        "headers": encode_headers(headers),
        "traceparent": traceparent,
    }


# The rows' created_at is their write, just before the commit, not the transaction's start
# (the column's default, now()): where the record's hop begins (shared.observability.stages).
_WRITE_OUTBOX = insert(outbox_table).values(created_at=func.clock_timestamp())


class ReadFrom(NamedTuple):
    """Where a consumed event was read: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int


class UnitOfWork:
    """One database transaction: the service's own changes and the events they emit.

    Use it as ``async with factory() as uow: ...; await uow.commit()``. Leaving the block
    without ``commit`` (an exception included) rolls everything back, events too.
    """

    def __init__(
        self, connection: AsyncConnection, topics: Topics, relay: LocalRelay | None = None
    ) -> None:
        self._session = connection
        self._topics = topics
        self._relay = relay
        self._staged: list[Record] = []
        self._committed = False
        self.read_from: dict[uuid.UUID, ReadFrom] = {}
        """Where each event handed to this unit of work's handlers was read, by event id
        (filled by the consumer runner; empty for a request's unit of work)."""

    @property
    def session(self) -> AsyncConnection:
        """The connection for the service's own queries (SQLAlchemy Core); it shares the
        transaction. A connection, not an ORM session: the services use Core statements
        only, and the session's bookkeeping was several per cent of a busy service's CPU."""
        return self._session

    @property
    def committed(self) -> bool:
        """Whether ``commit`` has succeeded at least once."""
        return self._committed

    def emit(self, event: Event, *, traceparent: str | None = None) -> None:
        """Publish ``event`` if and only if this unit of work commits.

        The outbox row is written at ``commit``, after the service's own statements: rows
        of one unit of work keep the order of their ``emit`` calls. It carries
        ``traceparent``, by default the span of the event's cause or of the request in hand
        (``shared.observability.tracing.traceparent_for``).
        """
        context = traceparent or traceparent_for(event)
        self._staged.append(encode(event, self._topics, context))

    async def commit(self) -> None:
        """Write the staged outbox rows, wake the relay, and commit the transaction."""
        emitted = bool(self._staged)
        # The leading relay in this process is woken directly after the commit; only a
        # relay elsewhere needs a notification (one round trip, and a lock PostgreSQL takes
        # on every commit that notifies).
        local = emitted and self._relay is not None and self._relay.is_leader
        if emitted:
            rows = [_outbox_row(record) for record in self._staged]
            await self._session.execute(_WRITE_OUTBOX, rows)
            if not local:
                # Delivered to listeners only when the transaction commits (and dropped if
                # it does not), so the relay never wakes for rows it cannot see yet.
                await self._session.execute(select(func.pg_notify(OUTBOX_CHANNEL, "")))
        await self._session.commit()
        self._staged.clear()
        self._committed = True
        if local and self._relay is not None:
            self._relay.wake()

    async def rollback(self) -> None:
        """Undo everything since the last commit, staged events included."""
        self._staged.clear()
        await self._session.rollback()

    async def __aenter__(self) -> Self:
        await self._session.start()  # a pooled connection from here to the block's end
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Closing returns the connection to the pool and rolls back whatever was not
        # committed; unlike an explicit rollback it never hides the exception in flight
        # when the connection is already gone.
        self._staged.clear()
        await self._session.close()


class LocalRelay(Protocol):
    """The outbox relay of this process, as a unit of work sees it
    (``shared.publishing.outbox``)."""

    @property
    def is_leader(self) -> bool: ...

    def wake(self) -> None: ...


class UnitOfWorkFactory:
    """Makes a fresh ``UnitOfWork`` per call: one per record, one per request.

    ``relay`` (set once the relay runs) is woken directly by units of work that emitted
    while it leads; otherwise they notify through PostgreSQL.
    """

    def __init__(self, engine: AsyncEngine, topics: Topics) -> None:
        self.engine = engine
        self.topics = topics
        self.relay: LocalRelay | None = None

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.engine.connect(), self.topics, self.relay)

    async def one_statement(
        self,
        statement: TextClause | TextualSelect,
        values: Mapping[str, Any],
        emit: Sequence[Event],
    ) -> list[RowMapping]:
        """A unit of work of one statement, in one round trip: ``statement`` runs, and the
        events of ``emit`` are written to the outbox if and only if it returned a row.

        ``statement`` is a ``text()`` statement with ``RETURNING`` (``insert_unless_present``
        with ``returning``); its rows are returned. What ``async with factory() as uow``
        takes four round trips for (BEGIN, the statement, the outbox rows, COMMIT) is one
        statement here, committed on its own: on the path of a request that is most of its
        database time, and each round trip waits for a busy event loop's turn.
        """
        if not isinstance(statement, TextualSelect):
            raise TypeError(
                "one_statement needs a statement with RETURNING: it emits if a row comes back"
            )
        local = self.relay is not None and self.relay.is_leader
        combined = _with_outbox(statement, len(emit), notify=not local)
        params = dict(values)
        for index, event in enumerate(emit):
            row = _outbox_row(encode(event, self.topics, traceparent_for(event)))
            params.update({f"_outbox{index}_{name}": value for name, value in row.items()})
        async with self.engine.connect() as connection:
            # No BEGIN and no COMMIT: one statement is its own transaction.
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await autocommit.execute(combined, params)).mappings().all()
        if rows and emit and local and self.relay is not None:
            self.relay.wake()
        return list(rows)


_OUTBOX_COLUMNS = ("topic", "key", "value", "headers", "traceparent")


@functools.cache
def _with_outbox(statement: TextualSelect, events: int, *, notify: bool) -> TextualSelect:
    """``statement`` in a ``WITH``, followed by the insert of ``events`` outbox rows that
    happens only if it returned a row (and a notification to a relay elsewhere, delivered at
    commit like ``UnitOfWork.commit``'s). Cached: one compiled statement per shape."""
    inner = statement.element
    columns = ", ".join(_OUTBOX_COLUMNS)
    parameters = [
        bindparam(f"_outbox{index}_{name}", type_=outbox_table.c[name].type)
        for index in range(events)
        for name in _OUTBOX_COLUMNS
    ]
    rows = " UNION ALL ".join(
        "SELECT "
        + ", ".join(
            f"CAST(:_outbox{index}_{name} AS {type_name(outbox_table.c[name])})"
            for name in _OUTBOX_COLUMNS
        )
        + ", clock_timestamp()"
        for index in range(events)
    )
    parts = [f"written AS ({inner.text})"]
    if events:
        # Rows inserted in emission order: UNION ALL keeps its branches' order.
        parts.append(
            f"emitted AS (INSERT INTO {outbox_table.name} ({columns}, created_at) "
            f"SELECT * FROM ({rows}) AS emitted WHERE EXISTS (SELECT FROM written))"
        )
    tail = "SELECT written.* FROM written"
    if events and notify:
        parts.append(f"notified AS (SELECT pg_notify('{OUTBOX_CHANNEL}', '') FROM written)")
        tail += " CROSS JOIN notified"
    sql = f"WITH {', '.join(parts)} {tail}"
    combined = text(sql).bindparams(*inner._bindparams.values(), *parameters)
    return combined.columns(*statement.selected_columns)
