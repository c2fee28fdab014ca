"""Real Kafka, PostgreSQL and Redis for one test session, and names no two tests share.

Where the infrastructure comes from, in this order:

1. ``SAGAKIT_TEST_KAFKA_BOOTSTRAP``, ``SAGAKIT_TEST_POSTGRES_URL`` and ``SAGAKIT_TEST_REDIS_URL``
   all set: used as they are (the PostgreSQL role needs CREATEDB);
2. ``SAGAKIT_TEST_BACKEND=testcontainers``: Kafka (KRaft), PostgreSQL and Redis containers,
   when a Docker engine answers;
3. otherwise the local stack's ``test`` profile (ports 19092, 15432, 16379), started for the
   session and stopped at its end, unless it was already running.

Every name handed out starts with the session's run id, so tests never share state, and
:meth:`Infrastructure.cleanup` removes what the session created (databases, topics, keys).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import redis.asyncio
from aiokafka.admin import AIOKafkaAdminClient

from deploy import localstack
from deploy.localstack.postgres import create_database, database_url, drop_database

__all__ = ["Endpoints", "Infrastructure", "session_infrastructure"]

ENDPOINT_VARS = (
    "SAGAKIT_TEST_KAFKA_BOOTSTRAP",
    "SAGAKIT_TEST_POSTGRES_URL",
    "SAGAKIT_TEST_REDIS_URL",
)
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"


@dataclass(frozen=True)
class Endpoints:
    """Where the session's infrastructure answers."""

    kafka_bootstrap: str
    postgres_url: str
    """Server-level URL of a role with CREATEDB."""
    redis_url: str
    source: str


class Infrastructure:
    """What the ``infra`` fixture yields: endpoints, fresh databases and unique names."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.run_id = f"t{uuid.uuid4().hex[:8]}"
        self._counter = itertools.count(1)
        self._databases: list[str] = []

    @property
    def kafka_bootstrap(self) -> str:
        return self.endpoints.kafka_bootstrap

    @property
    def redis_url(self) -> str:
        return self.endpoints.redis_url

    @property
    def postgres_url(self) -> str:
        return self.endpoints.postgres_url

    def unique(self, label: str) -> str:
        """A name used once in this session: valid as a topic, group id or key prefix."""
        return f"{self.run_id}-{label}-{next(self._counter)}"

    def topic(self, label: str) -> str:
        """A topic name no other test uses."""
        return self.unique(label)

    def topic_prefix(self, label: str) -> str:
        """A SAGAKIT_TOPIC_PREFIX that gives a test its own copy of every topic."""
        return f"{self.unique(label)}."

    def key_prefix(self, label: str) -> str:
        """A Redis key prefix no other test uses (the Redis may be shared: never flush it)."""
        return f"{self.unique(label)}:"

    async def create_database(self, prefix: str) -> str:
        """Create a fresh, empty database; return its ``postgresql+asyncpg://`` URL."""
        raw = f"{prefix}_{self.run_id}_{next(self._counter)}".lower()
        name = re.sub(r"[^a-z0-9_]", "_", raw)[-63:]  # PostgreSQL's name limit
        await create_database(self.postgres_url, name)
        self._databases.append(name)
        return database_url(self.postgres_url, name)

    async def cleanup(self) -> None:
        """Remove the databases, topics and Redis keys this session created."""
        for name in self._databases:
            await drop_database(self.postgres_url, name)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka_bootstrap)
        await admin.start()
        try:
            ours = [topic for topic in await admin.list_topics() if topic.startswith(self.run_id)]
            if ours:
                await admin.delete_topics(ours)
        finally:
            await admin.close()
        client = redis.asyncio.Redis.from_url(self.redis_url)
        try:
            async for key in client.scan_iter(match=f"{self.run_id}-*"):
                await client.delete(key)
        finally:
            await client.aclose()


@asynccontextmanager
async def session_infrastructure() -> AsyncIterator[Infrastructure]:
    """The session's infrastructure, from the first source that applies (module docstring)."""
    async with _endpoints() as endpoints:
        infrastructure = Infrastructure(endpoints)
        try:
            yield infrastructure
        finally:
            await asyncio.wait_for(infrastructure.cleanup(), 60)


def _endpoints() -> AbstractAsyncContextManager[Endpoints]:
    given = {var: os.environ.get(var, "") for var in ENDPOINT_VARS}
    if all(given.values()):
        return _given(given)
    if any(given.values()):
        missing = ", ".join(var for var, value in given.items() if not value)
        raise RuntimeError(f"set all three SAGAKIT_TEST_* endpoints or none; missing: {missing}")
    backend = os.environ.get("SAGAKIT_TEST_BACKEND", "localstack")
    if backend == "testcontainers":
        return _containers()
    if backend == "localstack":
        return _local_stack()
    raise RuntimeError(
        f"SAGAKIT_TEST_BACKEND={backend!r}: use localstack (default) or testcontainers"
    )


@asynccontextmanager
async def _given(given: dict[str, str]) -> AsyncIterator[Endpoints]:
    kafka, postgres, redis_url = (given[var] for var in ENDPOINT_VARS)
    yield Endpoints(kafka, postgres, redis_url, source="SAGAKIT_TEST_* endpoints")


@asynccontextmanager
async def _local_stack() -> AsyncIterator[Endpoints]:
    # A worker thread: up() waits with asyncio.run, which must not meet the session's loop.
    # An empty environ: a shell that sourced .stack/stack.env must not send the tests to the
    # dev stack. The lease: sessions running side by side share the test stack, and the last
    # one to end stops what sessions started (a test stack started by hand keeps running).
    session = os.getpid()
    report = await asyncio.to_thread(localstack.up, "test", {}, lease=session)
    try:
        yield Endpoints(
            report.env["SAGAKIT_KAFKA_BOOTSTRAP"],
            report.env["SAGAKIT_POSTGRES_URL"],
            report.env["SAGAKIT_REDIS_URL"],
            source="the local stack's test profile",
        )
    finally:
        await asyncio.to_thread(localstack.down, "test", lease=session)


@asynccontextmanager
async def _containers() -> AsyncIterator[Endpoints]:
    # Imported here: only this source needs Docker's client libraries.
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer
    from testcontainers.core.docker_client import DockerClient

    try:
        await asyncio.to_thread(lambda: DockerClient().client.ping())
    except Exception as error:
        raise RuntimeError(
            f"SAGAKIT_TEST_BACKEND=testcontainers, but no Docker engine answers ({error}): "
            "start Docker, or unset SAGAKIT_TEST_BACKEND to use the local stack"
        ) from error
    kafka = KafkaContainer(KAFKA_IMAGE).with_kraft()
    postgres = PostgresContainer(
        POSTGRES_IMAGE, username="sagakit", password="sagakit", dbname="postgres", driver=None
    )
    redis_container = RedisContainer(REDIS_IMAGE)
    async with AsyncExitStack() as stack:
        # A cold broker container on a small machine takes longer than the default 30 s.
        await asyncio.to_thread(kafka.start, 120)
        stack.push_async_callback(asyncio.to_thread, kafka.stop)
        for container in (postgres, redis_container):
            await asyncio.to_thread(container.start)
            stack.push_async_callback(asyncio.to_thread, container.stop)
        host = redis_container.get_container_host_ip()
        yield Endpoints(
            kafka.get_bootstrap_server(),
            postgres.get_connection_url(),
            f"redis://{host}:{redis_container.get_exposed_port(6379)}/0",
            source="testcontainers",
        )
