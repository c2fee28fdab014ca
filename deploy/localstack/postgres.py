"""PostgreSQL with one database per service.

Sources, in order: every service's ``SAGAKIT_<SVC>_DATABASE_URL`` as given (one per
service under ``services/``, its database ``sagakit_<svc>``); else a server named by
``SAGAKIT_POSTGRES_URL`` (the databases are created there); else the profile's own Debian
cluster (``sagakit-dev``, ``sagakit-test``), created and started with Debian's tools.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from deploy.localstack import ports
from deploy.localstack.component import Context, Plan, StatusRow
from deploy.localstack.declared import declared_services
from deploy.localstack.errors import StackError
from deploy.localstack.prereqs import Needs
from deploy.localstack.processes import run
from deploy.localstack.profiles import HOST
from deploy.localstack.readiness import wait_until_answers

__all__ = [
    "Postgres",
    "create_database",
    "database_url",
    "drop_database",
    "select_one",
]

ROLE = "sagakit"  # also its password: a local, loopback-only development server
PG_ROOT = Path("/usr/lib/postgresql")
# pg_createcluster refuses to run when the environment's locale is not installed (common in
# containers); C.UTF-8 is built into glibc.
LOCALE = "C.UTF-8"
# Without the flag, pg_ctlcluster hands over to systemctl where systemd runs: we start the
# cluster ourselves, as root, and it runs as user postgres.
PG_CTLCLUSTER = ("pg_ctlcluster", "--skip-systemctl-redirect")
AS_POSTGRES = ("runuser", "-u", "postgres", "--")
Source = Literal["databases", "server", "local"]


def database_url(url: str, database: str | None = None) -> str:
    """``url`` in SQLAlchemy's async form (``postgresql+asyncpg://``), naming ``database``."""
    parts = urlsplit(url)
    path = f"/{database}" if database else parts.path
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg", path=path))


async def create_database(server_url: str, name: str) -> None:
    """Create database ``name`` unless it exists (the role needs CREATEDB)."""
    async with _connect(server_url) as connection:
        found = await connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        if not found:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, closing whatever connections are left on it."""
    async with _connect(server_url) as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def select_one(url: str) -> None:
    """``SELECT 1`` over TCP: the server answers and the role may log in to that database."""
    async with _connect(url) as connection:
        await connection.execute(text("SELECT 1"))


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[AsyncConnection]:
    # AUTOCOMMIT: CREATE/DROP DATABASE cannot run inside a transaction.
    engine = create_async_engine(
        database_url(url),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Cluster:
    """One line of ``pg_lsclusters``."""

    version: str
    name: str
    port: int
    online: bool
    data_dir: Path

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


class Postgres:
    """PostgreSQL for the four services."""

    name = "postgres"

    def plan(self, ctx: Context) -> Plan:
        source = _source(ctx)
        if source == "databases":
            return Plan.yours("SAGAKIT_*_DATABASE_URL")
        if source == "server":
            return Plan.yours(_where(ctx.environ["SAGAKIT_POSTGRES_URL"]))
        cluster = _find_cluster(ctx.profile.postgres_cluster)
        if cluster and cluster.online:
            return Plan.running()
        problems: tuple[str, ...] = ()
        if os.geteuid() != 0:
            problems = (
                "the local PostgreSQL needs root (its Debian cluster runs as user postgres): "
                "run as root, or set SAGAKIT_POSTGRES_URL to a server where a role may "
                "create databases",
            )
        hint = "stop that server, or set SAGAKIT_POSTGRES_URL to use it"
        return Plan.start(
            Needs(
                packages=() if _installed_version() else ("postgresql",),
                ports=((ctx.profile.postgres_port, hint),),
                problems=problems,
            )
        )

    def start(self, ctx: Context) -> None:
        name = ctx.profile.postgres_cluster
        cluster = _find_cluster(name)
        version = cluster.version if cluster else _installed_version()
        if version is None:
            raise StackError("PostgreSQL is not installed: apt-get install -y postgresql")
        if cluster is None:
            # --start-conf manual: the distribution's init script must never start it at boot.
            options = ["--port", str(ctx.profile.postgres_port), "--start-conf", "manual"]
            run(
                ["pg_createcluster", *options, "--locale", LOCALE, version, name],
                env={"LC_ALL": LOCALE},
                what=f"creating PostgreSQL cluster {version}/{name}",
            )
        _configure(version, name)
        # pg_ctlcluster waits until the server accepts connections.
        run([*PG_CTLCLUSTER, version, name, "start"], what=f"starting cluster {version}/{name}")

    def ready(self, ctx: Context) -> None:
        source = _source(ctx)
        if source == "local":
            self._ensure_role(ctx)
        server = _server_url(ctx)
        urls = list(self.env(ctx).values())

        async def provision() -> None:
            if source != "databases":
                for service in declared_services():
                    await create_database(server, service.database)
            for url in urls:
                await select_one(url)

        wait_until_answers("PostgreSQL", provision, 60.0)

    def env(self, ctx: Context) -> dict[str, str]:
        if _source(ctx) == "databases":
            given = {s.database_var: ctx.environ[s.database_var] for s in declared_services()}
            server = ctx.environ.get("SAGAKIT_POSTGRES_URL")
            return given | ({"SAGAKIT_POSTGRES_URL": server} if server else {})
        server = _server_url(ctx)
        return {"SAGAKIT_POSTGRES_URL": server} | {
            s.database_var: database_url(server, s.database) for s in declared_services()
        }

    def stop(self, ctx: Context) -> None:
        cluster = _find_cluster(ctx.profile.postgres_cluster)
        if cluster and cluster.online:
            run(
                [*PG_CTLCLUSTER, "--mode", "fast", cluster.version, cluster.name, "stop"],
                what=f"stopping cluster {cluster.version}/{cluster.name}",
            )
        ports.wait_until_free((ctx.profile.postgres_port,), "PostgreSQL")

    def status(self, ctx: Context) -> list[StatusRow]:
        cluster = _find_cluster(ctx.profile.postgres_cluster)
        where = f"{HOST}:{ctx.profile.postgres_port}"
        if cluster is None:
            return [StatusRow(self.name, where, None, "not created")]
        state = "running" if cluster.online else "stopped"
        label = f"{where} (cluster {cluster.version}/{cluster.name})"
        return [StatusRow(self.name, label, cluster.pid if cluster.online else None, state)]

    def _ensure_role(self, ctx: Context) -> None:
        cluster = _find_cluster(ctx.profile.postgres_cluster)
        assert cluster is not None  # started or found running
        sql = (
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') "
            f"THEN CREATE ROLE {ROLE}; END IF; END $$; "
            f"ALTER ROLE {ROLE} WITH LOGIN CREATEDB PASSWORD '{ROLE}';"
        )
        # Over the Unix socket as user postgres (peer auth): TCP needs a password we lack yet.
        psql = [*AS_POSTGRES, str(PG_ROOT / cluster.version / "bin" / "psql"), "-X", "-q"]
        options = ["-v", "ON_ERROR_STOP=1", "-p", str(cluster.port), "-d", "postgres"]
        run([*psql, *options, "-c", sql], what=f"creating role {ROLE}")


def _source(ctx: Context) -> Source:
    every = [s.database_var for s in declared_services()]
    given = [var for var in every if ctx.environ.get(var)]
    if len(given) == len(every):
        return "databases"
    if given:
        missing = sorted(set(every) - set(given))
        raise StackError(
            f"{', '.join(given)} set but not {', '.join(missing)}: set them all, or none "
            "(then SAGAKIT_POSTGRES_URL or the local PostgreSQL is used)"
        )
    return "server" if ctx.environ.get("SAGAKIT_POSTGRES_URL") else "local"


def _server_url(ctx: Context) -> str:
    given = ctx.environ.get("SAGAKIT_POSTGRES_URL")
    return given or f"postgresql://{ROLE}:{ROLE}@{HOST}:{ctx.profile.postgres_port}/postgres"


def _where(url: str) -> str:
    """host:port of a URL, leaving its password out of the output."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}"


def _installed_version() -> str | None:
    """The newest PostgreSQL major version installed (Debian keeps each under PG_ROOT)."""
    found = (server.parent.parent.name for server in PG_ROOT.glob("*/bin/postgres"))
    versions = [version for version in found if version.isdigit()]
    return max(versions, key=int) if versions else None


def _find_cluster(name: str) -> Cluster | None:
    """The cluster called ``name`` in any installed version, from ``pg_lsclusters``."""
    try:
        listing = run(["pg_lsclusters", "-h"], what="pg_lsclusters").stdout
    except StackError:
        return None  # postgresql-common is not installed yet
    for line in listing.splitlines():
        version, cluster, port, status, _owner, data_dir, *_ = line.split()
        if cluster == name:
            return Cluster(version, cluster, int(port), status.startswith("online"), Path(data_dir))
    return None


# Each service process may hold its pool (SAGAKIT_DATABASE_POOL_SIZE 15, no overflow) and the
# dedicated connections of its relay, purger and leader loops: about 20. The reference system
# runs seven processes, and the test suite several systems on one cluster: PostgreSQL's
# default of 100 was reached (a read then failed for want of a connection).
# max_wal_size: at 100 sagas/s the system writes about 4.5 MB of WAL a second, and with the
# default 1GB a checkpoint started every 2 minutes (the soak of 2026-12-07: 540 MB between
# checkpoints). Right after a checkpoint the first change to each page writes the whole page
# to the WAL, so frequent checkpoints multiply the WAL and the disk writes; with 4GB they come
# every checkpoint_timeout (5 minutes), and recovery after a crash stays bounded by it.
SETTINGS: Final = {"max_connections": "400", "max_wal_size": "4GB"}


def _configure(version: str, name: str) -> None:
    """The cluster's own settings, in the conf.d its postgresql.conf includes (read at start)."""
    conf_d = Path("/etc/postgresql") / version / name / "conf.d"
    conf_d.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{key} = {value}\n" for key, value in SETTINGS.items())
    (conf_d / "sagakit.conf").write_text(f"# written by sagakit's local stack\n{lines}")
