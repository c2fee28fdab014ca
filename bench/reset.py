"""A clean slate for the benchmark's own stack: empty tables and an empty Redis, so that each
run measures the same table sizes rather than every earlier run's leftovers.

Only ever on a stack whose profile is ``bench``: these are the benchmark's databases, and a
dev or test stack must never lose its data to a benchmark.
"""

from __future__ import annotations

import asyncpg
import redis.asyncio

from bench.target import Target
from deploy.localstack.profiles import SERVICES

__all__ = ["reset_bench_stack"]

_TABLES = (
    "SELECT quote_ident(tablename) FROM pg_tables "
    "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
)


async def reset_bench_stack(target: Target) -> None:
    """Empty every service table (the schema stays) and flush the stack's Redis."""
    if target.profile != "bench":
        raise RuntimeError(f"refusing to empty a {target.profile or 'foreign'} stack")
    for service in SERVICES:
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
