"""The inbox table and the Redis fast path, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE
from shared.consuming.group_lock import GroupLock
from shared.consuming.inbox import Deduplicator, Inbox
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory, create_platform_tables, make_engine
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import wait_until


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("inbox"))
    await create_platform_tables(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def uow_factory(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, Topics(CATALOGUE))


async def claim_and_commit(factory: UnitOfWorkFactory, group: str, event_id: uuid.UUID) -> bool:
    async with factory() as uow:
        first = await Inbox().claim(uow, group, event_id)
        await uow.commit()
    return first


def closed_port() -> int:
    # Bind then close: nothing listens there afterwards, so connecting is refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_the_same_event_is_claimed_once_per_group(uow_factory: UnitOfWorkFactory) -> None:
    event_id = uuid.uuid4()

    assert await claim_and_commit(uow_factory, "payment", event_id) is True
    assert await claim_and_commit(uow_factory, "payment", event_id) is False


async def test_a_claim_behind_the_group_lock_waits_for_the_group_s_transaction(
    engine: AsyncEngine, uow_factory: UnitOfWorkFactory
) -> None:
    # The lock and the claim are one statement: it must not claim (nor lock an inbox row)
    # before the group's transaction under way has ended.
    group, event_id = f"locked-{uuid.uuid4().hex[:8]}", uuid.uuid4()
    lock = GroupLock(group)
    async with uow_factory() as holder:
        await lock.take(holder)

        async def claim() -> set[uuid.UUID]:
            async with uow_factory() as uow:
                claimed = await Inbox().claim_all(uow, group, [event_id], lock=lock)
                await uow.commit()
            return claimed

        waiting = asyncio.create_task(claim())

        async def blocked_on_the_lock() -> bool:
            async with engine.connect() as connection:
                found = await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND NOT granted AND objid = :key"
                    ),
                    {"key": lock.key["lock_group"] % (1 << 32)},
                )
            return bool(found)

        await wait_until(blocked_on_the_lock, what="the claim waits for the group's lock")
        # Had the waiting statement inserted its inbox row before asking for the lock, this
        # claim of the same event would wait for that row; it is claimed at once (and
        # rolled back).
        async with uow_factory() as other:
            plain = Inbox().claim_all(other, group, [event_id])
            assert await asyncio.wait_for(plain, timeout=30) == {event_id}
        assert not waiting.done()
        await holder.commit()

    assert await asyncio.wait_for(waiting, timeout=30) == {event_id}


async def test_two_groups_each_claim_the_same_event(uow_factory: UnitOfWorkFactory) -> None:
    event_id = uuid.uuid4()

    assert await claim_and_commit(uow_factory, "payment", event_id) is True
    assert await claim_and_commit(uow_factory, "order", event_id) is True


async def test_a_claim_rolled_back_with_its_handler_can_be_claimed_again(
    uow_factory: UnitOfWorkFactory,
) -> None:
    event_id = uuid.uuid4()
    async with uow_factory() as uow:
        assert await Inbox().claim(uow, "payment", event_id) is True
        # the handler fails: no commit

    assert await claim_and_commit(uow_factory, "payment", event_id) is True


async def test_of_two_concurrent_claims_of_one_event_exactly_one_wins(
    engine: AsyncEngine, uow_factory: UnitOfWorkFactory
) -> None:
    event_id = uuid.uuid4()
    async with uow_factory() as first, uow_factory() as second:
        assert await Inbox().claim(first, "payment", event_id) is True
        # The second insert waits on the first transaction's row until it commits: seen
        # waiting by PostgreSQL itself, not assumed after a pause.
        waiting = asyncio.create_task(Inbox().claim(second, "payment", event_id))
        await wait_until(lambda: backends_waiting_on_a_lock(engine), what="the second claim waits")
        assert not waiting.done()
        await first.commit()
        assert await asyncio.wait_for(waiting, 30) is False


async def backends_waiting_on_a_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        waiting = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


@pytest.fixture
async def redis(infra: Infrastructure) -> AsyncIterator[Redis]:
    client = Redis.from_url(infra.redis_url)
    yield client
    await client.aclose()


async def test_the_deduplicator_remembers_an_event_per_group(
    infra: Infrastructure, redis: Redis
) -> None:
    dedup = Deduplicator(redis, ttl_seconds=60, prefix=infra.key_prefix("seen").rstrip(":"))
    event_id = uuid.uuid4()

    assert await dedup.already_processed("payment", event_id) is False
    await dedup.remember("payment", event_id)

    assert await dedup.already_processed("payment", event_id) is True
    assert await dedup.already_processed("order", event_id) is False
    assert 0 < await redis.ttl(dedup.key("payment", event_id)) <= 60


async def test_an_unreachable_redis_answers_not_known_and_the_inbox_decides(
    uow_factory: UnitOfWorkFactory,
) -> None:
    down = Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=0.5)
    dedup = Deduplicator(down, ttl_seconds=60)
    event_id = uuid.uuid4()
    try:
        for expected_first in (True, False):
            assert await dedup.already_processed("payment", event_id) is False
            assert await claim_and_commit(uow_factory, "payment", event_id) is expected_first
            await dedup.remember("payment", event_id)  # swallowed, logged
    finally:
        await down.aclose()
