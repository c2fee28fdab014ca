"""Services' handlers on real PostgreSQL, their events delivered in-process: a saga step tested in
milliseconds, without Kafka or Redis.

``Harness(payment.service, order.service, postgres_url=...)`` gives each declared service a
fresh database on that server (migrated as the service would be at start), builds its consumer
groups from its declaration, and then, on ``settle()``, delivers every event waiting in any
outbox to every group (of any of the services) that subscribes to its type, until no outbox
holds anything. The path an event takes is the production one minus the transport:

- each delivery is one unit of work that claims the event in the group's inbox first, runs
  the group's handlers for its type, and commits (a copy delivered twice is skipped there);
- what handlers emit goes through ``uow.emit`` into the service's outbox, and the harness
  reads it back from there (``published``), as the relay would;
- a ``PermanentError`` (a rule refusing the event, or bytes that are not an event) is what the
  runner dead-letters: it is kept in ``dead_letters`` and the run goes on; any other error is
  raised to the test, since the harness has no broker to retry on.

What it leaves out on purpose: Kafka (no partitions, offsets or rebalances), Redis's fast path
(the inbox alone deduplicates), retries and their backoff, the services' HTTP routes and
background components (a sweeper, say). A test starts a saga with ``publish`` or through a
service's own unit of work (``units(name)``), which leaves its events in the outbox.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.app.declaration import ServiceDeclaration
from shared.app.platform import Platform
from shared.consuming.inbox import Inbox
from shared.consuming.subscriptions import Route, routes_by_topic
from shared.contracts.errors import PermanentError
from shared.contracts.events import Event
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory, make_engine, outbox_table
from shared.storage.migrations import upgrade_to_head

__all__ = ["DeadLetter", "Harness", "HarnessError"]

log = logging.getLogger(__name__)


class HarnessError(RuntimeError):
    """The harness was misused, or the services never settled."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a group refused for good, as the consumer runner would have dead-lettered it."""

    group: str
    event: Event
    error: PermanentError


@dataclass(frozen=True, slots=True)
class _Group:
    service: str
    name: str
    routes: Mapping[str, Route]
    units: UnitOfWorkFactory


class Harness:
    """Declared services on real PostgreSQL, wired to each other in-process."""

    def __init__(
        self,
        *services: ServiceDeclaration[Any],
        postgres_url: str,
        settings: Mapping[str, Any] | None = None,
        max_deliveries: int = 10_000,
    ) -> None:
        if not services:
            raise HarnessError("declare at least one service")
        self._declarations = {declaration.name: declaration for declaration in services}
        self._catalogue = services[0].catalogue
        if any(declaration.catalogue is not self._catalogue for declaration in services):
            raise HarnessError("the services of one harness share one event catalogue")
        self._server = make_url(postgres_url).set(drivername="postgresql+asyncpg")
        self._settings = dict(settings or {})
        self._max_deliveries = max_deliveries
        self._platforms: dict[str, Platform[Any]] = {}
        self._databases: list[str] = []
        self._groups: list[_Group] = []
        self._inbox = Inbox()
        self._topics = Topics(self._catalogue)
        self.published: list[Event] = []
        """Every event that left an outbox, in the order the harness delivered it."""
        self.dead_letters: list[DeadLetter] = []

    async def __aenter__(self) -> Self:
        try:
            for name, declaration in self._declarations.items():
                await self._start(name, declaration)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def units(self, service: str) -> UnitOfWorkFactory:
        """A service's units of work: its state to read, or a saga to start by hand."""
        if service not in self._platforms:
            raise HarnessError(f"no service {service!r} here: {', '.join(self._platforms)}")
        return self._platforms[service].units

    def platform(self, service: str) -> Platform[Any]:
        """What a service's factories were built on (its settings, engine, fault registry)."""
        self.units(service)
        return self._platforms[service]

    async def publish(self, *events: Event, by: str | None = None) -> None:
        """Put ``events`` in a service's outbox (``by``, default the first declared), as if
        that service had emitted them; ``settle`` delivers them."""
        async with self.units(by or next(iter(self._platforms)))() as uow:
            for event in events:
                uow.emit(event)
            await uow.commit()

    async def settle(self) -> list[Event]:
        """Deliver until no outbox holds an unpublished event; return what was published."""
        start = len(self.published)
        for _ in range(self._max_deliveries):
            pending = await self._next_pending()
            if pending is None:
                return self.published[start:]
            await self._deliver(pending)
        raise HarnessError(
            f"still delivering after {self._max_deliveries} events: do the handlers loop?"
        )

    async def close(self) -> None:
        """Dispose of the engines and drop the databases the harness made."""
        for platform in self._platforms.values():
            await platform.engine.dispose()
            with contextlib.suppress(Exception):
                await platform.redis.aclose()
        self._platforms.clear()
        if not self._databases:
            return
        server = make_engine(self._server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with server.connect() as connection:
                for database in self._databases:
                    await _drop(connection, database)
        finally:
            self._databases.clear()
            await server.dispose()

    async def _start(self, name: str, declaration: ServiceDeclaration[Any]) -> None:
        database = f"harness_{name}_{uuid.uuid4().hex[:12]}"
        server = make_engine(self._server.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with server.connect() as connection:
                await connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
        finally:
            await server.dispose()
        self._databases.append(database)
        url = self._server.set(database=database).render_as_string(hide_password=False)
        # Copied, not passed to the class: a field read from an alias (the database URL's
        # SAGAKIT_<NAME>_DATABASE_URL) ignores a keyword of its own name.
        settings = declaration.settings().model_copy(update={**self._settings, "database_url": url})
        platform = Platform.configure(settings, self._catalogue, declaration.fault_kinds)
        self._platforms[name] = platform
        await upgrade_to_head(platform.engine, declaration.migrations)
        for group, subscriptions in declaration.groups(platform).items():
            routes = routes_by_topic(subscriptions, self._topics)
            self._groups.append(_Group(name, group, routes, platform.units))

    async def _next_pending(self) -> tuple[str, bytes] | None:
        """The oldest unpublished outbox row of the first service that has one."""
        for platform in self._platforms.values():
            query = (
                select(outbox_table.c.id, outbox_table.c.topic, outbox_table.c.value)
                .where(outbox_table.c.sent_at.is_(None))
                .order_by(outbox_table.c.id)
                .limit(1)
            )
            async with platform.engine.begin() as connection:
                row = (await connection.execute(query)).first()
                if row is not None:
                    await connection.execute(
                        update(outbox_table)
                        .where(outbox_table.c.id == row.id)
                        .values(sent_at=func.now())
                    )
                    return row.topic, row.value
        return None

    async def _deliver(self, pending: tuple[str, bytes]) -> None:
        topic, value = pending
        event = self._catalogue.decode(value)
        self.published.append(event)
        for group in self._groups:
            route = group.routes.get(topic)
            if route is None:
                continue
            try:
                async with group.units() as uow:
                    if await self._inbox.claim(uow, group.name, event.event_id):
                        await route.handle([event], uow)
                    await uow.commit()
            except PermanentError as error:
                self.dead_letters.append(DeadLetter(group.name, event, error))

    @property
    def groups(self) -> Sequence[str]:
        """The consumer groups the declared services run, in declaration order."""
        return [group.name for group in self._groups]


async def _drop(connection: AsyncConnection, database: str) -> None:
    """Drop a database the harness made. Its engines are closed, so a plain DROP finds no
    session but perhaps an autovacuum worker, which PostgreSQL stops for it; FORCE, which a
    role that is not a superuser may not use on such a worker, is only the fallback for a
    session left behind. One that still cannot be dropped is logged, not raised: the tests
    have their answer, and the server's databases of a test run go with its cluster."""
    for statement in (
        f'DROP DATABASE IF EXISTS "{database}"',
        f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)',
    ):
        try:
            await connection.exec_driver_sql(statement)
            return
        except DBAPIError as error:
            failed = error
    log.warning("harness: database %s left behind (%s)", database, failed)
