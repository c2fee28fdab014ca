"""The platform wired for one service: what every service's ``bootstrap`` builds on.

``Platform.configure`` builds the pieces that need no connection yet (engine, Redis client,
unit-of-work factory, fault registry); ``Platform.service`` adds the service's migrations,
subscriptions and routes and returns the ``Service`` the shell runs. Everything that talks to
Kafka is created when the app starts, inside the running event loop (aiokafka binds to it),
and nothing connects at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.consumer import ConsumerRunner
from shared.db import UnitOfWorkFactory, make_engine
from shared.faults import FaultKind, FaultRegistry
from shared.inbox import Deduplicator
from shared.migrations import upgrade_to_head
from shared.observability import Sample
from shared.outbox import OutboxRelay
from shared.producer import build_producer
from shared.service import Service
from shared.settings import PlatformSettings, kafka_client_options
from shared.subscriptions import Subscription
from shared.topics import Topics, ensure_topics

__all__ = ["Platform"]

log = logging.getLogger(__name__)


@dataclass
class Platform:
    """The shared infrastructure of one service process."""

    settings: PlatformSettings
    engine: AsyncEngine
    redis: Redis
    topics: Topics
    units: UnitOfWorkFactory
    faults: FaultRegistry

    @classmethod
    def configure(cls, settings: PlatformSettings, faults: frozenset[FaultKind]) -> Platform:
        """The platform for ``settings``; ``faults`` are the fault kinds this service accepts."""
        engine = make_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        topics = Topics(settings.topic_prefix)
        return cls(
            settings=settings,
            engine=engine,
            redis=Redis.from_url(settings.redis_url),
            topics=topics,
            units=UnitOfWorkFactory(engine, topics),
            faults=FaultRegistry(faults),
        )

    def service(
        self,
        *,
        migrations: Path,
        consumers: Mapping[str, Sequence[Subscription]],
        routers: Sequence[APIRouter] = (),
        admin_routers: Sequence[APIRouter] = (),
        description: str = "",
    ) -> Service:
        """The service the shell runs: its migrations folder, consumer groups and routes."""
        runtime = Runtime(self, migrations, consumers)
        return Service(
            settings=self.settings,
            engine=self.engine,
            redis=self.redis,
            faults=self.faults,
            components=[runtime],
            routers=routers,
            admin_routers=admin_routers,
            probes={"kafka": runtime.ping_kafka, "consumer groups": runtime.check_joined},
            description=description,
        )


@dataclass
class Runtime:
    """What runs while the app lives: the producer, the outbox relay, the consumer runners."""

    platform: Platform
    migrations: Path
    consumers: Mapping[str, Sequence[Subscription]]
    producer: AIOKafkaProducer | None = field(default=None, init=False)
    relay: OutboxRelay | None = field(default=None, init=False)
    runners: list[ConsumerRunner] = field(default_factory=list, init=False)

    async def start(self) -> None:
        settings = self.platform.settings
        await self._migrate()
        await ensure_topics(
            kafka_client_options(settings),
            self.platform.topics.all(),
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            min_insync_replicas=settings.topic_min_insync_replicas,
            dlq_retention_ms=settings.dlq_retention_ms,
        )
        self.producer = build_producer(settings)
        await self.producer.start()
        self.relay = OutboxRelay.from_settings(settings, self.producer)
        await self.relay.start()
        self.platform.units.relay = self.relay
        dedup = Deduplicator(self.platform.redis, ttl_seconds=settings.idempotency_ttl_seconds)
        for group, subscriptions in self.consumers.items():
            runner = ConsumerRunner(
                # The topic prefix separates systems sharing a cluster: their groups too.
                group_id=f"{settings.topic_prefix}{group}",
                subscriptions=subscriptions,
                settings=settings,
                units=self.platform.units,
                dedup=dedup,
                producer=self.producer,
                topics=self.platform.topics,
                faults=self.platform.faults,
            )
            await runner.start()
            self.runners.append(runner)

    async def stop(self) -> None:
        # Consumers first (they drain and commit), then the relay publishes what they
        # emitted, then the producer flushes.
        for runner in reversed(self.runners):
            await runner.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def ping_kafka(self) -> None:
        if self.producer is None:
            raise RuntimeError("not started yet")
        await self.producer.client.fetch_all_metadata()

    async def check_joined(self) -> None:
        # Until its first assignment an instance consumes nothing: "ready" before that would
        # let a caller (make up, a test) count on an instance that is not working yet.
        waiting = [runner.group_id for runner in self.runners if not runner.joined]
        if waiting or not self.runners:
            raise RuntimeError(f"not yet assigned in {', '.join(waiting) or 'any group'}")

    def partitions(self) -> dict[str, dict[str, list[int]]]:
        """Per consumer group, the partitions of each topic this process owns right now."""
        owned: dict[str, dict[str, list[int]]] = {}
        for runner in self.runners:
            topics = owned.setdefault(runner.group_id, {})
            for tp in sorted(runner.assigned_partitions):
                topics.setdefault(tp.topic, []).append(tp.partition)
        return owned

    def metrics(self) -> Iterable[Sample]:
        labels = {
            "service": self.platform.settings.service_name,
            "instance": self.platform.settings.instance_id,
        }
        if self.relay is not None:
            stats = self.relay.stats
            yield Sample("sagakit_outbox_published_total", stats.published, labels)
            yield Sample("sagakit_outbox_purged_total", stats.purged_outbox, labels)
            yield Sample("sagakit_inbox_purged_total", stats.purged_inbox, labels)
            yield Sample("sagakit_outbox_leader", int(self.relay.is_leader), labels, kind="gauge")
        for runner in self.runners:
            yield from runner.metrics()

    async def _migrate(self) -> None:
        # Under an advisory lock: instances starting together migrate one after the other.
        await upgrade_to_head(self.platform.engine, self.migrations)
