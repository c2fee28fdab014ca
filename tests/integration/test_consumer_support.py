"""Helpers of the consumer runner's integration tests (this module holds no test).

The effect of every test handler is a row in ``consumer_effects``: ``(label, event_id, n)``,
``n`` incremented each time a handler's unit of work commits for that event. "Exactly one
effect" is ``n == 1``, read from the database.

Run as a module, it is the child process of the crash tests:
``python -m tests.integration.test_consumer_support '<json ChildConfig>'``. The child runs
one runner until SIGTERM, then prints its counters as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.asyncio import Redis
from sqlalchemy import Column, Integer, MetaData, Table, Text, Uuid, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated
from services.faults import FaultSpec
from shared.consuming.consumer import POLL_STALL_S, ConsumerRunner, Subscription
from shared.consuming.faults import INFRASTRUCTURE_KINDS, FaultKind, FaultRegistry
from shared.consuming.inbox import Deduplicator
from shared.consuming.subscriptions import Delivery, Handler
from shared.contracts.events import Event
from shared.contracts.topics import Topics, encode, ensure_topics
from shared.settings import PlatformSettings
from shared.storage.db import UnitOfWork, UnitOfWorkFactory, make_engine, platform_metadata

__all__ = [
    "CONSUMER_OPTIONS",
    "ChildConfig",
    "Kafka",
    "closed_port",
    "count_effects",
    "effect_handler",
    "effects_of",
    "new_order",
    "prepare_database",
    "read_all",
    "running",
    "settings_for",
    "wait_until",
]

tables = MetaData()
effects = Table(
    "consumer_effects",
    tables,
    Column("label", Text, primary_key=True),
    Column("event_id", Uuid, primary_key=True),
    Column("n", Integer, nullable=False),
)

# Short heartbeats so that rebalances in tests take about a second, not three.
CONSUMER_OPTIONS: dict[str, Any] = {"heartbeat_interval_ms": 300, "session_timeout_ms": 6000}

WAIT_S = 30.0
PARTITIONS = 6


async def prepare_database(url: str) -> AsyncEngine:
    """An engine on ``url`` with the platform's tables and ``consumer_effects`` created."""
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(platform_metadata.create_all)
        await connection.run_sync(tables.create_all)
    return engine


def settings_for(kafka: str, topics: Topics, **overrides: Any) -> PlatformSettings:
    """Settings for a test runner: fast retries, the test's topics."""
    values: dict[str, Any] = {
        "service_name": "consumer-test",
        "kafka_bootstrap": kafka,
        "topic_prefix": topics.prefix,
        "retry_attempts": 3,
        "retry_base_delay_ms": 20,
        "retry_max_delay_ms": 100,
    }
    return PlatformSettings(**(values | overrides))


def new_order(order_id: str | None = None) -> OrderCreated:
    """A valid ``OrderCreated`` with a fresh event id."""
    return OrderCreated.first(
        order_id=order_id or f"o-{uuid.uuid4().hex[:12]}",
        producer="order",
        customer_id="c-1",
        items=[{"sku": "apple", "quantity": 1, "unit_price": "1.00"}],
        total="1.00",
    )


async def add_effect(uow: UnitOfWork, label: str, event: Event) -> None:
    """The test handlers' effect: one more ``n`` for ``(label, event_id)``."""
    await uow.session.execute(
        text(
            "INSERT INTO consumer_effects (label, event_id, n) VALUES (:label, :id, 1) "
            "ON CONFLICT (label, event_id) DO UPDATE SET n = consumer_effects.n + 1"
        ),
        {"label": label, "id": event.event_id},
    )


def effect_handler(label: str) -> Handler[OrderCreated]:
    """A handler whose only effect is ``add_effect(label)``."""

    async def handle(event: OrderCreated, uow: UnitOfWork) -> None:
        await add_effect(uow, label, event)

    return handle


async def effects_of(engine: AsyncEngine, label: str) -> dict[uuid.UUID, int]:
    """``event_id -> n`` for ``label``."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(effects.c.event_id, effects.c.n).where(effects.c.label == label)
        )
        return {row.event_id: row.n for row in rows}


async def count_effects(engine: AsyncEngine, label: str) -> int:
    """How many events of ``label`` have an effect."""
    return len(await effects_of(engine, label))


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float = WAIT_S, what: str = ""
) -> None:
    """Poll ``condition`` every 50 ms; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f}s: {what or condition}")
        await asyncio.sleep(0.05)


def closed_port() -> int:
    """A local port nothing listens on (bind, read the number, close)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Kafka:
    """A test's own topics on the session's broker, and a producer for them."""

    bootstrap: str
    topics: Topics
    producer: AIOKafkaProducer

    @classmethod
    @asynccontextmanager
    async def connect(cls, bootstrap: str, topics: Topics) -> AsyncIterator[Kafka]:
        """Create every topic of ``topics`` (6 partitions, DLQs too) and a producer."""
        await ensure_topics({"bootstrap_servers": bootstrap}, topics.all(), partitions=PARTITIONS)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        try:
            yield cls(bootstrap, topics, producer)
        finally:
            await producer.stop()

    async def publish(self, event: Event) -> None:
        """Send ``event`` as the outbox relay would."""
        record = encode(event, self.topics)
        await self.producer.send_and_wait(
            record.topic, value=record.value, key=record.key, headers=list(record.headers)
        )

    async def publish_raw(
        self, topic: str, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Send any bytes to ``topic``."""
        await self.producer.send_and_wait(topic, value=value, key=key, headers=list(headers))


async def read_all(
    bootstrap: str, topic: str, expected: int, *, timeout_s: float = WAIT_S
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the start until ``expected`` records came (or fail after timeout)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        # Every test topic has PARTITIONS partitions (ensure_topics in ``Kafka.connect``).
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(records)} records on {topic}, expected {expected}")
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


@asynccontextmanager
async def running(
    settings: PlatformSettings,
    engine: AsyncEngine,
    subscriptions: Sequence[Subscription],
    *,
    group: str,
    topics: Topics,
    dedup: Deduplicator | None = None,
    faults: FaultRegistry | None = None,
    poll_stall_s: float = POLL_STALL_S,
) -> AsyncIterator[ConsumerRunner]:
    """A started runner for ``group``; stopped (drained, committed) on exit."""
    runner = ConsumerRunner(
        group_id=group,
        subscriptions=subscriptions,
        settings=settings,
        units=UnitOfWorkFactory(engine, topics),
        topics=topics,
        dedup=dedup,
        faults=faults,
        consumer_options=CONSUMER_OPTIONS,
        poll_stall_s=poll_stall_s,
    )
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop()


# The child process of the crash tests ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
CHILD_WAIT_S = 60.0


class Child:
    """One runner process; its log goes to a file shown when something goes wrong."""

    def __init__(self, config: ChildConfig, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.config.command(), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log
            )

    async def exit_code(self) -> int:
        """Wait for the process to end by itself."""
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), CHILD_WAIT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"the child did not exit; its log:\n{self.log.read_text()}"
            ) from None

    async def kill(self) -> None:
        """SIGKILL: no drain, no commit, whatever transaction is open stays uncommitted."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> dict[str, int]:
        """SIGTERM: the runner drains and commits; return the counters it prints."""
        assert self.process is not None and self.process.stdout is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            out = await asyncio.wait_for(self.process.stdout.read(), CHILD_WAIT_S)
            await asyncio.wait_for(self.process.wait(), CHILD_WAIT_S)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"the child did not stop; its log:\n{self.log.read_text()}"
            ) from None
        assert self.process.returncode == 0, self.log.read_text()
        stats: dict[str, int] = json.loads(out.decode().splitlines()[-1])
        return stats


@dataclass
class ChildConfig:
    """What a child runner does; passed as JSON on its command line."""

    kafka: str
    database_url: str
    topic_prefix: str
    group: str
    label: str
    redis_url: str
    delivery: Delivery = "at_least_once"
    crash_after_commit_of: list[str] = field(default_factory=list)
    """Order ids for which an injected ``crash`` fault fires once (after the DB commit)."""
    exit_in_handler_for: list[str] = field(default_factory=list)
    """Order ids whose handler ends the process before doing anything."""
    handler_delay_ms: int = 0
    """How long the handler sleeps after its effect: a slow handler keeps a run's
    transaction open."""
    batch_size: int = 200
    """``consumer_batch_size``: most records of a partition in one transaction."""

    def command(self) -> list[str]:
        """The command line that runs this child."""
        return [sys.executable, "-m", __name__, json.dumps(asdict(self))]


async def _child(config: ChildConfig) -> dict[str, int]:
    topics = Topics(CATALOGUE, config.topic_prefix)
    engine = make_engine(config.database_url)
    redis = Redis.from_url(config.redis_url)
    faults = FaultRegistry(INFRASTRUCTURE_KINDS)
    if config.crash_after_commit_of:
        faults.add(FaultSpec(kind=FaultKind.crash, count=1, order_ids=config.crash_after_commit_of))

    async def handle(event: OrderCreated, uow: UnitOfWork) -> None:
        if event.order_id in config.exit_in_handler_for:
            os._exit(3)  # "crash between receive and effect"
        await add_effect(uow, config.label, event)
        await asyncio.sleep(config.handler_delay_ms / 1000)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    runner = ConsumerRunner(
        group_id=config.group,
        subscriptions=[Subscription(OrderCreated, handle, config.delivery)],
        settings=settings_for(config.kafka, topics, consumer_batch_size=config.batch_size),
        units=UnitOfWorkFactory(engine, topics),
        topics=topics,
        dedup=Deduplicator(redis, ttl_seconds=600, prefix=f"{config.topic_prefix}seen"),
        faults=faults,
        consumer_options=CONSUMER_OPTIONS,
    )
    await runner.start()
    print("started", flush=True)
    await stop.wait()
    await runner.stop()
    await redis.aclose()
    await engine.dispose()
    return asdict(runner.stats)


if __name__ == "__main__":
    stats = asyncio.run(_child(ChildConfig(**json.loads(sys.argv[1]))))
    print(json.dumps(stats), flush=True)
