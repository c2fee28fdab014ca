"""The platform's one leader loop (shared.storage.leadership), against real PostgreSQL.

The relay, the purger and the deadline sweeper run on it; their own tests check what they do
while leading. These check the election itself: one leader at a time, a lost connection hands
the lead over, and a failing job is run again rather than dying silently.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from shared.storage.db import asyncpg_dsn
from shared.storage.leadership import LeaderLoop, lock_key
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import wait_until

pytestmark = pytest.mark.integration

_KEYS = itertools.count()


@pytest.fixture
async def database(infra: Infrastructure) -> AsyncIterator[str]:
    yield await infra.create_database("leadership")


async def until(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await wait_until(check)


async def cut(database: str, connection: asyncpg.Connection) -> None:
    """End ``connection``'s server process, as an operator or a network fault would."""
    admin = await asyncpg.connect(asyncpg_dsn(database))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
    finally:
        await admin.close()


class Job:
    """A job that records each lead and holds it until told to stop, or fails when asked."""

    def __init__(self, fail_first: int = 0, *, queries: bool = True) -> None:
        self.leads = 0
        self.queries = queries
        self.fail_first = fail_first
        self.connection: asyncpg.Connection | None = None
        self.loop: LeaderLoop | None = None

    async def lead(self, connection: asyncpg.Connection) -> None:
        self.leads += 1
        if self.leads <= self.fail_first:
            raise RuntimeError(f"job failed on lead {self.leads}")
        self.connection = connection
        assert self.loop is not None
        while not self.loop.stopping.is_set() and not connection.is_closed():
            if self.queries:
                await connection.fetchval("SELECT 1")
            await self.loop.sleep(0.05)


def loop_for(database: str, job: Job, key: int, name: str) -> LeaderLoop:
    job.loop = LeaderLoop(database, job.lead, lock_key=key, name=name, standby_s=0.05)
    return job.loop


async def test_one_of_two_leads_and_the_other_takes_over_when_its_connection_is_cut(
    database: str,
) -> None:
    key = lock_key(f"test.leadership.{next(_KEYS)}")
    first, second = Job(), Job()
    loops = [loop_for(database, first, key, "first"), loop_for(database, second, key, "second")]
    for loop in loops:
        loop.start()
    try:
        await until(lambda: any(loop.is_leader for loop in loops))
        leader, standby = loops if loops[0].is_leader else loops[::-1]
        leading_job, standing_job = (first, second) if leader is loops[0] else (second, first)
        # The other one tried the lock and stands by: it never led.
        await until(lambda: standby.leaderships == 0 and leader.leaderships == 1)
        assert standing_job.leads == 0

        assert leading_job.connection is not None
        await cut(database, leading_job.connection)

        await until(lambda: standby.is_leader)
        assert standing_job.leads == 1
    finally:
        for loop in loops:
            await loop.stop(10)
    assert not any(loop.is_leader for loop in loops)


async def test_a_job_that_fails_is_led_again_after_a_backoff(database: str) -> None:
    job = Job(fail_first=2)
    loop = loop_for(database, job, lock_key(f"test.leadership.{next(_KEYS)}"), "failing")
    loop.start()
    try:
        await until(lambda: job.leads == 3 and loop.is_leader)
        assert loop.leaderships == 3
    finally:
        await loop.stop(10)


async def test_a_lead_ended_by_its_lost_connection_is_logged_and_backs_off(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A job may notice its connection is gone and return (as Job does) rather than raise:
    # that is a lost connection all the same. Led again at once, it raced the standbys for
    # the lock it had just lost (and could keep it: the fresh-clone run of 2026-12-07 saw
    # the other loop of the test above never take over), and nothing was logged.
    caplog.set_level(logging.WARNING, logger="shared.storage.leadership")
    job = Job(queries=False)  # it only sees the connection closed, and returns
    loop = loop_for(database, job, lock_key(f"test.leadership.{next(_KEYS)}"), "cut")
    loop.start()
    try:
        await until(lambda: loop.is_leader and job.connection is not None)
        assert job.connection is not None
        await cut(database, job.connection)
        await until(lambda: job.leads == 2 and loop.is_leader)
        backed_off = [r for r in caplog.records if "retrying in" in r.getMessage()]
        assert len(backed_off) == 1, [r.getMessage() for r in caplog.records]
    finally:
        await loop.stop(10)
