"""The services' database pool, as the platform's default settings size it, against a real
PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.settings import PlatformSettings
from shared.storage.db import make_engine
from tests.infra import Infrastructure


async def _backends_of_a_full_burst(engine: AsyncEngine, connections: int) -> set[int]:
    """The server processes behind ``connections`` connections held at once."""
    all_held = asyncio.Event()
    held: list[int] = []

    async def hold() -> int:
        async with engine.connect() as connection:
            pid = int(await connection.scalar(text("SELECT pg_backend_pid()")) or 0)
            held.append(pid)
            if len(held) == connections:
                all_held.set()
            await all_held.wait()
            return pid

    return set(await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(connections))), 60))


async def test_a_burst_that_fills_the_pool_keeps_its_connections(infra: Infrastructure) -> None:
    # A connection opened for a burst and closed when returned costs a server process, a
    # SCRAM handshake and the statements prepared anew on the next one: with 10 kept and 5
    # more for bursts, a loaded order service opened and closed connections all the time.
    settings = PlatformSettings(service_name="test-pool")
    capacity = settings.database_pool_size + settings.database_max_overflow
    engine = make_engine(
        await infra.create_database("pool"),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    try:
        first = await _backends_of_a_full_burst(engine, capacity)
        second = await _backends_of_a_full_burst(engine, capacity)
    finally:
        await engine.dispose()

    assert len(first) == capacity  # the burst held every connection the pool may have
    assert second == first, f"{len(second - first)} of {capacity} connections opened anew"
