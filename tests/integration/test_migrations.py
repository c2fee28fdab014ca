"""Each service's migrations against real PostgreSQL: exactly its tables, once, under a lock.

The platform's tables come from the platform's own history (``sagakit_platform_version``),
run first; a database made when the service histories still created them is adopted.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, func, inspect, select, text

import services
from shared.storage.db import make_engine, platform_metadata
from shared.storage.migrations import (
    MIGRATION_LOCK_KEY,
    PLATFORM_MIGRATIONS,
    PLATFORM_VERSION_TABLE,
    alembic_config,
    compare_options,
    upgrade_to_head,
)
from tests.infra import Infrastructure

REPOSITORY = Path(__file__).parents[2]
DECLARED = {declaration.name: declaration for declaration in services.declarations()}
TABLES: dict[str, MetaData] = {
    # Each service's tables are its store's metadata (what its migrations/env.py targets).
    name: importlib.import_module(f"services.{name}.store").metadata
    for name in DECLARED
}
WAIT_S = 60.0  # a fresh interpreter imports a whole service: allow a slow machine

each_service = pytest.mark.parametrize("service", list(TABLES))


def migrations(service: str) -> Path:
    return DECLARED[service].migrations


def schema_of(service: str) -> MetaData:
    """The service's tables and the platform's, as one metadata (what its env.py targets)."""
    schema = MetaData()
    for metadata in (TABLES[service], platform_metadata):
        for table in metadata.tables.values():
            table.to_metadata(schema)
    return schema


def head_of(service: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(migrations(service))).get_current_head()


PLATFORM_HEAD = ScriptDirectory.from_config(alembic_config(PLATFORM_MIGRATIONS)).get_current_head()


@dataclass(frozen=True)
class DatabaseState:
    tables: list[str]
    version: str | None
    platform_version: str | None
    differences: list[Any]
    """What autogenerate would write to bring the database to the tables: [] when equal."""


def not_a_version_table(name: str | None, type_: str, _parents: object) -> bool:
    return not (type_ == "table" and name == PLATFORM_VERSION_TABLE)


def describe(connection: Connection, schema: MetaData) -> DatabaseState:
    context = MigrationContext.configure(
        connection, opts={**compare_options(), "include_name": not_a_version_table}
    )
    platform = MigrationContext.configure(
        connection, opts={"version_table": PLATFORM_VERSION_TABLE}
    )
    return DatabaseState(
        tables=sorted(inspect(connection).get_table_names()),
        version=context.get_current_revision(),
        platform_version=platform.get_current_revision(),
        differences=list(compare_metadata(context, schema)),
    )


async def database_state(url: str, service: str) -> DatabaseState:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(describe, schema_of(service))
    finally:
        await engine.dispose()


def at_head_with_exactly_its_tables(state: DatabaseState, service: str) -> bool:
    expected = sorted([*schema_of(service).tables, "alembic_version", PLATFORM_VERSION_TABLE])
    return (
        state.tables == expected
        and state.version == head_of(service)
        and state.platform_version == PLATFORM_HEAD
        and not state.differences
    )


def revisions_run(caplog: pytest.LogCaptureFixture) -> list[str]:
    # alembic logs "Running upgrade <from> -> <to>, <message>" for each revision it applies.
    return [record.message for record in caplog.records if record.message.startswith("Running ")]


@asynccontextmanager
async def holding_the_migration_lock(url: str) -> AsyncIterator[None]:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            try:
                yield
            finally:
                await connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
    finally:
        await engine.dispose()


async def until_waiting_for_the_lock(url: str, upgrades: list[asyncio.subprocess.Process]) -> None:
    # A bigint key below 2**32 shows in pg_locks as objid (classid 0).
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND objid::bigint = :key"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    engine = make_engine(url)
    deadline = time.monotonic() + WAIT_S
    try:
        async with engine.connect() as connection:
            while (await connection.scalar(query, {"key": MIGRATION_LOCK_KEY})) < len(upgrades):
                for upgrade in upgrades:
                    if upgrade.returncode is not None:  # it ended without waiting: say why
                        output, _ = await upgrade.communicate()
                        raise AssertionError(f"an upgrade ended early: {output.decode()[-2000:]}")
                assert time.monotonic() < deadline, "the upgrades never waited for the lock"
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


async def start_upgrade_process(url: str, service: str) -> asyncio.subprocess.Process:
    """``python -m shared.storage.migrations <folder> upgrade head``, as a person would."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.storage.migrations",
        str(migrations(service)),
        "upgrade",
        "head",
        cwd=REPOSITORY,
        env={**os.environ, f"SAGAKIT_{service.upper()}_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


@each_service
async def test_upgrading_an_empty_database_gives_exactly_the_services_tables(
    infra: Infrastructure, service: str
) -> None:
    url = await infra.create_database(f"migrate_{service}")

    await upgrade_to_head(url, migrations(service))

    state = await database_state(url, service)
    assert at_head_with_exactly_its_tables(state, service), state


@each_service
async def test_upgrading_a_database_at_head_runs_no_revision(
    infra: Infrastructure, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = await infra.create_database(f"migrate_twice_{service}")
    caplog.set_level(logging.INFO, logger="alembic")
    await upgrade_to_head(url, migrations(service))
    first = revisions_run(caplog)
    before = await database_state(url, service)
    caplog.clear()

    await upgrade_to_head(url, migrations(service))

    assert first, "the first upgrade should have run the revisions"
    assert revisions_run(caplog) == []
    assert await database_state(url, service) == before


@each_service
async def test_two_processes_upgrading_one_fresh_database_together_both_succeed(
    infra: Infrastructure, service: str
) -> None:
    url = await infra.create_database(f"migrate_together_{service}")

    # Both processes queue on the lock the test holds, so they really start together.
    async with holding_the_migration_lock(url):
        upgrades = [await start_upgrade_process(url, service) for _ in range(2)]
        await until_waiting_for_the_lock(url, upgrades)
    outputs = [await asyncio.wait_for(upgrade.communicate(), WAIT_S) for upgrade in upgrades]

    assert [upgrade.returncode for upgrade in upgrades] == [0, 0], outputs
    state = await database_state(url, service)
    assert at_head_with_exactly_its_tables(state, service), state


async def test_one_process_may_upgrade_several_databases_at_once(infra: Infrastructure) -> None:
    urls = {service: await infra.create_database(f"migrate_side_{service}") for service in TABLES}

    await asyncio.gather(
        *(upgrade_to_head(url, migrations(service)) for service, url in urls.items())
    )

    for service, url in urls.items():
        state = await database_state(url, service)
        assert at_head_with_exactly_its_tables(state, service), (service, state)


async def test_a_database_made_before_migrations_is_refused_with_the_command_that_adopts_it(
    infra: Infrastructure,
) -> None:
    url = await infra.create_database("migrate_unversioned")
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(schema_of("payment").create_all)
    finally:
        await engine.dispose()

    with pytest.raises(RuntimeError, match="no alembic_version") as refused:
        await upgrade_to_head(url, migrations("payment"))

    stamp = f"python -m shared.storage.migrations {migrations('payment')} stamp 0001"
    assert stamp in str(refused.value)


async def execute(url: str, *statements: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


def test_no_service_history_touches_the_platforms_tables() -> None:
    platform_tables = set(platform_metadata.tables)
    for service in TABLES:
        for revision in (migrations(service) / "versions").glob("*.py"):
            source = revision.read_text()
            assert not any(table in source for table in platform_tables), revision


@pytest.mark.parametrize(
    ("service", "old_head", "adopted_as"), [("payment", "0004", "0001"), ("order", "0010", "0010")]
)
async def test_a_database_whose_service_history_made_the_platforms_tables_is_adopted(
    infra: Infrastructure,
    service: str,
    old_head: str,
    adopted_as: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What the histories before the platform's own left: the same tables, the platform's
    # version table missing, and the service at a head that may no longer exist (payment's
    # 0002-0004 only changed the platform's tables, and are gone). Order's is its head now
    # (0009 adds columns and 0010 a table: stamping an older head under tables that have them
    # would run it again).
    url = await infra.create_database(f"migrate_adopt_{service}")
    await upgrade_to_head(url, migrations(service))
    await execute(
        url,
        f"DROP TABLE {PLATFORM_VERSION_TABLE}",
        f"UPDATE alembic_version SET version_num = '{old_head}'",
    )
    caplog.set_level(logging.INFO, logger="alembic")

    await upgrade_to_head(url, migrations(service))

    assert revisions_run(caplog) == [f"Running stamp_revision  -> {PLATFORM_HEAD}"]
    state = await database_state(url, service)
    assert at_head_with_exactly_its_tables(state, service), state
    assert state.version == adopted_as


async def test_an_adopted_database_gets_the_platform_revisions_its_tables_lack(
    infra: Infrastructure, caplog: pytest.LogCaptureFixture
) -> None:
    # An old database at the platform's third version: no retention indexes yet.
    url = await infra.create_database("migrate_adopt_older")
    await upgrade_to_head(url, migrations("shipping"))
    await execute(
        url,
        f"DROP TABLE {PLATFORM_VERSION_TABLE}",
        "DROP INDEX sagakit_inbox_processed_at",
        "DROP INDEX sagakit_outbox_sent_at",
        "UPDATE alembic_version SET version_num = '0003'",
    )
    caplog.set_level(logging.INFO, logger="alembic")

    await upgrade_to_head(url, migrations("shipping"))

    assert [line.split(",")[0] for line in revisions_run(caplog)] == [
        "Running stamp_revision  -> 0003",
        "Running upgrade 0003 -> 0004",
    ]
    state = await database_state(url, "shipping")
    assert at_head_with_exactly_its_tables(state, "shipping"), state


async def test_a_platform_version_table_emptied_by_hand_is_adopted_again(
    infra: Infrastructure, caplog: pytest.LogCaptureFixture
) -> None:
    # What a TRUNCATE of every table but alembic_version did (the soak's and the bench's
    # resets, before they knew this table): the tables there, their version gone.
    url = await infra.create_database("migrate_emptied_version")
    await upgrade_to_head(url, migrations("payment"))
    await execute(url, f"DELETE FROM {PLATFORM_VERSION_TABLE}")
    caplog.set_level(logging.INFO, logger="alembic")

    await upgrade_to_head(url, migrations("payment"))

    assert revisions_run(caplog) == [f"Running stamp_revision  -> {PLATFORM_HEAD}"]
    state = await database_state(url, "payment")
    assert at_head_with_exactly_its_tables(state, "payment"), state
