"""Admission control's outbox bound (services.order.admission) on a real PostgreSQL outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from services.order.admission import Admission, Overloaded, outbox_backlog
from shared.storage.db import make_engine, outbox_table, platform_metadata
from tests.infra import Infrastructure


@pytest.fixture
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("admission"))
    async with engine.begin() as connection:
        await connection.run_sync(platform_metadata.create_all)
    yield engine
    await engine.dispose()


async def add_unsent(engine: AsyncEngine, count: int, age: timedelta) -> None:
    rows = [{"topic": "t", "key": b"k", "value": b"v", "headers": {}} for _ in range(count)]
    async with engine.begin() as connection:
        await connection.execute(insert(outbox_table).values(created_at=func.now() - age), rows)


async def test_an_outbox_backlog_past_its_bounds_refuses_orders_until_it_drains(
    engine: AsyncEngine,
) -> None:
    admission = Admission(64, outbox_backlog(engine), max_backlog_rows=5, max_backlog_age_s=30)

    await add_unsent(engine, 3, timedelta(seconds=1))
    await admission.sample()
    with admission.admit():
        pass  # under both bounds

    await add_unsent(engine, 3, timedelta(seconds=1))  # 6 rows: past the bound of 5
    await admission.sample()
    with pytest.raises(Overloaded) as too_many, admission.admit():
        pass
    assert (too_many.value.reason, too_many.value.retry_after_s) == ("outbox_backlog", 5)
    assert "6 unsent events" in too_many.value.detail

    await mark_sent(engine)
    await admission.sample()
    with admission.admit():
        pass

    await add_unsent(engine, 1, timedelta(minutes=1))  # one row, but past 30 s
    await admission.sample()
    with pytest.raises(Overloaded) as too_old, admission.admit():
        pass
    assert too_old.value.reason == "outbox_backlog"
    assert admission.shed["outbox_backlog"] == 2


async def mark_sent(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(outbox_table.update().values(sent_at=func.now()))
