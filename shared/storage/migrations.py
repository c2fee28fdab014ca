"""Schema migrations: the platform's and one per service, applied when the service starts.

Every service's database holds two histories. The platform's tables (the outbox and the inbox,
``platform_metadata``) are migrated by the platform itself, from ``platform_migrations/``
beside this module, and versioned in ``sagakit_platform_version``: a change to them is one
revision there, and no service copies it. Each service keeps its own environment in
``services/<name>/migrations/``: an ``env.py`` that hands ``run_environment`` the service's
tables, a ``script.py.mako`` and the revisions in ``versions/``, versioned in
``alembic_version``. Each environment ignores the other's tables. There is no ``alembic.ini``:
``alembic_config`` builds the configuration from the folder.

A service calls ``upgrade_to_head`` as it starts: the platform's history first, then its own.
It holds a PostgreSQL advisory lock for the whole upgrade, so instances that start together
migrate one after the other and the later ones find the schema at head and do nothing.

Databases made before the platform migrated its own tables (their service histories created
the outbox and inbox, in revisions since removed) are adopted once, on their first upgrade:
the platform's history is stamped at the version their tables show, and a service revision
that no longer exists is stamped as the newest one before it (``_adopt``).

By hand, from the repository root: the folder, then any alembic command with alembic's own
arguments. The database is ``SAGAKIT_<NAME>_DATABASE_URL`` (``<NAME>`` is the folder's
service), else ``SAGAKIT_DATABASE_URL``, the same variables the service reads (``upgrade``
brings the platform's tables to their head first, as a starting service does)::

    export SAGAKIT_PAYMENT_DATABASE_URL=postgresql+asyncpg://sagakit:sagakit@127.0.0.1:5432/sagakit_payment
    python -m shared.storage.migrations services/payment/migrations upgrade head
    python -m shared.storage.migrations services/payment/migrations revision --autogenerate \\
        --rev-id 0002 -m "refund reasons"
    python -m shared.storage.migrations services/payment/migrations current
    # SQL only, no changes:
    python -m shared.storage.migrations services/payment/migrations upgrade head --sql

Autogenerate compares the database with the tables, so run it against a database at head
(an empty one, upgraded first, is the safest), then read and tidy the revision it writes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command, context
from alembic.config import CommandLine, Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, func, inspect, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.settings import database_url_variables
from shared.storage.db import make_engine, platform_metadata

__all__ = [
    "MIGRATION_LOCK_KEY",
    "PLATFORM_MIGRATIONS",
    "PLATFORM_VERSION_TABLE",
    "alembic_config",
    "compare_options",
    "run_environment",
    "run_platform_environment",
    "upgrade_to_head",
]

log = logging.getLogger(__name__)

# Advisory locks are scoped to one database: services sharing a server do not wait for each
# other. Distinct from the outbox relay's key, which lives in the same databases.
MIGRATION_LOCK_KEY: Final = zlib.crc32(b"sagakit.migrations")

PLATFORM_MIGRATIONS: Final = Path(__file__).with_name("platform_migrations")
PLATFORM_VERSION_TABLE: Final = "sagakit_platform_version"
# Every table of the platform's history: a service's environment leaves them alone.
_PLATFORM_TABLES: Final = frozenset({*platform_metadata.tables, PLATFORM_VERSION_TABLE})

# alembic keeps the running migration in module globals (alembic.context, alembic.op): two
# migrations interleaving in one process corrupt each other, even on different databases. The
# advisory lock serialises one database's migrations; this serialises the process's.
_IN_PROCESS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)

USAGE: Final = (
    "usage: python -m shared.storage.migrations services/<name>/migrations <alembic command>"
    " [args]\n"
    "e.g.:  python -m shared.storage.migrations services/billing/migrations upgrade head"
)


def compare_options() -> dict[str, Any]:
    """How autogenerate compares the database with the tables (``context.configure`` options).

    One place, so that ``revision --autogenerate`` and the test that checks a fresh database
    against the tables see the same differences.
    """
    return {"compare_type": True, "compare_server_default": True}


def alembic_config(script_location: str | Path, *, url: str | URL | None = None) -> Config:
    """The alembic configuration of one service's migrations folder (no ``alembic.ini``).

    ``url`` is needed only to render SQL offline (``--sql``); online runs get their
    connection from ``upgrade_to_head`` or the command line.
    """
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # Revision files named after their id: versions/0002_refund_reasons.py with --rev-id 0002.
    # Doubled percent signs: the options go through ConfigParser interpolation.
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # A new revision comes out formatted and with sorted imports, as ruff wants it.
    hooks = {
        "ruff_fix": "check --fix-only --quiet REVISION_SCRIPT_FILENAME",
        "ruff_format": "format --quiet REVISION_SCRIPT_FILENAME",
    }
    config.set_section_option("post_write_hooks", "hooks", " ".join(hooks))
    for hook, arguments in hooks.items():
        config.set_section_option("post_write_hooks", f"{hook}.type", "module")
        config.set_section_option("post_write_hooks", f"{hook}.module", "ruff")
        config.set_section_option("post_write_hooks", f"{hook}.options", arguments)
    if url is not None:
        rendered = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


async def upgrade_to_head(
    engine_or_url: AsyncEngine | str | URL, script_location: str | Path
) -> None:
    """Upgrade the platform's tables, then the service's, to the newest revision of each
    (``script_location`` is the service's folder); a no-op at head.

    Two callers on one database run one after the other (advisory lock): the second finds the
    schema at head. Within one process, migrations run one at a time whatever their database.
    An engine passed in stays open; one made from a URL is disposed of.
    """
    config = alembic_config(script_location)
    async with _locked_connection(engine_or_url) as connection:
        await _upgrade_both(connection, config)


async def _upgrade_both(connection: AsyncConnection, config: Config) -> None:
    """Under the migration lock: adopt an older database if need be, then both histories."""
    await connection.run_sync(_refuse_unversioned_schema, config)
    await connection.run_sync(_adopt, config)
    await connection.commit()  # alembic runs its own transaction, not inside ours
    head = _upgrade_head()
    await connection.run_sync(_run_online, alembic_config(PLATFORM_MIGRATIONS), head)
    await connection.commit()
    await connection.run_sync(_run_online, config, head)
    await connection.commit()


def _upgrade_head() -> Callable[[Config], None]:
    return lambda cfg: command.upgrade(cfg, "head")


def run_environment(*metadata: MetaData) -> None:
    """The body of every service's ``env.py``: run the revisions alembic chose.

    ``metadata`` is what autogenerate compares the database with: the service's tables (the
    platform's tables and their version table are left to the platform's environment).
    Online, the connection comes from ``upgrade_to_head`` or the command line, which hold the
    migration lock on it.
    """
    _run_revisions(list(metadata), "alembic_version", lambda table: table not in _PLATFORM_TABLES)


def run_platform_environment() -> None:
    """The body of the platform's ``env.py``: its tables alone, in their own version table."""
    _run_revisions(
        [platform_metadata], PLATFORM_VERSION_TABLE, lambda table: table in _PLATFORM_TABLES
    )


def _run_revisions(
    metadata: list[MetaData], version_table: str, owns: Callable[[str], bool]
) -> None:
    def include_name(name: str | None, type_: str, _parents: Mapping[str, str | None]) -> bool:
        return type_ != "table" or (name is not None and owns(name))

    options = {
        "target_metadata": metadata,
        "version_table": version_table,
        "include_name": include_name,
        **compare_options(),
    }
    if context.is_offline_mode():
        url = context.config.get_main_option("sqlalchemy.url")
        context.configure(url=url, literal_binds=True, **options)
    else:
        connection = context.config.attributes.get("connection")
        if connection is None:
            raise RuntimeError(
                "no database connection: run migrations with upgrade_to_head "
                f"({__name__}) or the command line, not with alembic itself\n{USAGE}"
            )
        context.configure(connection=connection, **options)
    with context.begin_transaction():
        context.run_migrations()


@asynccontextmanager
async def _locked_connection(
    engine_or_url: AsyncEngine | str | URL,
) -> AsyncIterator[AsyncConnection]:
    engine = engine_or_url if isinstance(engine_or_url, AsyncEngine) else make_engine(engine_or_url)
    in_process = _IN_PROCESS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    try:
        async with in_process, engine.connect() as connection:
            # A session lock, not a transaction lock: alembic commits the revisions itself,
            # and a revision with an autocommit block commits part-way through.
            await connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            await connection.commit()
            try:
                yield connection
            finally:
                # The connection goes back to the pool: the lock must not go with it.
                await connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
                await connection.commit()
    finally:
        if engine is not engine_or_url:
            await engine.dispose()


def _refuse_unversioned_schema(connection: Connection, config: Config) -> None:
    # A database whose tables create_all made before there were migrations: the first revision
    # would fail on its first CREATE TABLE, with an error that does not say what to do. The
    # platform's tables alone are not that: the service's first upgrade may not have run yet.
    tables = set(inspect(connection).get_table_names()) - _PLATFORM_TABLES
    if tables and "alembic_version" not in tables:
        first = ", ".join(ScriptDirectory.from_config(config).get_bases())
        location = config.get_main_option("script_location")
        raise RuntimeError(
            f"database {connection.engine.url.database!r} has tables but no alembic_version: "
            "it was made before migrations. If its schema is the first revision's, adopt it "
            f"once with: python -m shared.storage.migrations {location} stamp {first}; "
            "otherwise recreate it empty"
        )


def _adopt(connection: Connection, config: Config) -> None:
    """A database whose service history made the platform's tables (before the platform
    migrated them itself): stamp the platform's history at the version its tables show, and a
    service revision since removed (one that only changed the platform's tables) as the newest
    of the service's revisions before it."""
    database = inspect(connection)
    tables = set(database.get_table_names())
    if "sagakit_outbox" not in tables or _platform_versioned(connection, tables):
        return
    platform_version = _platform_version_shown(connection)
    _run_online(
        connection,
        alembic_config(PLATFORM_MIGRATIONS),
        lambda cfg: command.stamp(cfg, platform_version),
    )
    if "alembic_version" not in tables:
        return
    script = ScriptDirectory.from_config(config)
    current = connection.scalar(text("SELECT version_num FROM alembic_version"))
    known = sorted(revision.revision for revision in script.walk_revisions())
    if current is None or current in known:
        return
    older = [revision for revision in known if revision < current]
    if not older:
        raise RuntimeError(
            f"database {connection.engine.url.database!r} is at revision {current!r}, which "
            f"{config.get_main_option('script_location')} does not have: recreate it empty"
        )
    log.warning(
        "adopting database %r: revision %s (the platform's tables, now migrated by the "
        "platform) stamped as %s",
        connection.engine.url.database,
        current,
        older[-1],
    )
    connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": older[-1]})


def _platform_versioned(connection: Connection, tables: set[str]) -> bool:
    """Whether the platform's history says where it stands. An empty version table says
    nothing (a reset that emptied every table but alembic_version left one): adopted too."""
    if PLATFORM_VERSION_TABLE not in tables:
        return False
    count: int = connection.scalar(text(f"SELECT count(*) FROM {PLATFORM_VERSION_TABLE}"))
    return count != 0


def _platform_version_shown(connection: Connection) -> str:
    """The platform revision whose tables an adopted database holds, read from their shape."""
    database = inspect(connection)
    indexes = {index["name"] for index in database.get_indexes("sagakit_inbox")}
    columns = {column["name"] for column in database.get_columns("sagakit_outbox")}
    if "sagakit_inbox_processed_at" in indexes:
        return "0004"
    if "refusal" in columns:
        return "0003"
    if "traceparent" in columns:
        return "0002"
    return "0001"


def _run_online(connection: Connection, config: Config, run: Callable[[Config], None]) -> None:
    config.attributes["connection"] = connection
    run(config)


def _database_url(folder: Path) -> str:
    # The command line is the one reader of the environment outside the settings classes: it
    # has no service to ask, and must target the database the service would.
    service = folder.resolve().parent.name
    variables = database_url_variables(service)
    for variable in variables:
        if url := os.environ.get(variable):
            return url
    raise SystemExit(
        f"{variables[0]} is not set: export the database URL of the {service} service, "
        f"e.g. postgresql+asyncpg://sagakit:sagakit@127.0.0.1:5432/sagakit_{service}"
    )


async def _run_command_online(
    url: str, config: Config, run: Callable[[Config], None], upgrade: bool
) -> None:
    async with _locked_connection(url) as connection:
        if upgrade:  # the platform's tables first, as a starting service does
            await connection.run_sync(_adopt, config)
            await connection.commit()
            await connection.run_sync(
                _run_online, alembic_config(PLATFORM_MIGRATIONS), _upgrade_head()
            )
            await connection.commit()
        await connection.run_sync(_run_online, config, run)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m shared.storage.migrations <folder> <command> [args]`` (module docstring)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0].startswith("-"):
        raise SystemExit(USAGE)
    folder = Path(arguments[0])
    if not (folder / "env.py").is_file():
        raise SystemExit(f"{folder} has no env.py: pass a service's migrations folder\n{USAGE}")
    cli = CommandLine(prog=f"python -m shared.storage.migrations {folder}")
    options = cli.parser.parse_args(arguments[1:])
    if not hasattr(options, "cmd"):
        cli.parser.error("an alembic command is missing, e.g. upgrade head")
    url = _database_url(folder)
    config = alembic_config(folder, url=url)
    config.cmd_opts = options

    def run(cfg: Config) -> None:
        cli.run_cmd(cfg, options)

    if getattr(options, "sql", False):
        run(config)  # offline: renders SQL, connects to nothing
    else:
        asyncio.run(
            _run_command_online(url, config, run, upgrade=options.cmd[0] is command.upgrade)
        )


if __name__ == "__main__":
    main()
