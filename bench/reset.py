"""A clean slate for the benchmark's own stack: empty tables and an empty Redis, so that each
run measures the same table sizes rather than every earlier run's leftovers.

Only ever on a stack whose profile is ``bench`` and whose databases and Redis are the bench
profile's own (its ports on this machine): a stack.env that names someone else's servers,
a dev or a test stack must never lose its data to a benchmark.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import redis.asyncio

from bench.target import Target
from deploy.localstack.declared import service_names
from deploy.localstack.profiles import HOST, PROFILES
from shared.storage.migrations import PLATFORM_VERSION_TABLE

__all__ = ["refuse_unless_ours", "reset_bench_stack"]

_TABLES = (
    "SELECT quote_ident(tablename) FROM pg_tables "
    "WHERE schemaname = 'public' "
    f"AND tablename NOT IN ('alembic_version', '{PLATFORM_VERSION_TABLE}')"
)


def refuse_unless_ours(target: Target) -> None:
    """Raise unless ``target`` is the bench profile's stack on its own local servers."""
    profile = PROFILES["bench"]
    if target.profile != profile.name:
        raise RuntimeError(f"refusing to empty a {target.profile or 'foreign'} stack")
    services = service_names()
    servers = [target.database_dsn(service) for service in services] + [target.redis_url]
    ports = [profile.postgres_port] * len(services) + [profile.redis_port]
    for url, port in zip(servers, ports, strict=True):
        parts = urlsplit(url)
        if (parts.hostname, parts.port) != (HOST, port):
            raise RuntimeError(
                f"refusing to empty {parts.hostname}:{parts.port}: not the bench profile's "
                f"{HOST}:{port} (was make bench run with SAGAKIT_* variables set?)"
            )


async def reset_bench_stack(target: Target) -> None:
    """Empty every service table (the schema stays) and flush the stack's Redis."""
    refuse_unless_ours(target)
    for service in service_names():
        connection = await asyncpg.connect(target.database_dsn(service))
        try:
            tables = [row[0] for row in await connection.fetch(_TABLES)]
            if tables:
                # The services are idle; a lock they hold a moment must not hang the run.
                await connection.execute("SET lock_timeout = '10s'")
                # Identities go on counting: the outbox relay remembers rows by id.
                await connection.execute(f"TRUNCATE {', '.join(tables)}")
        finally:
            await connection.close()
    client = redis.asyncio.Redis.from_url(target.redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
