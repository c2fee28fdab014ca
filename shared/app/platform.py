"""The platform wired for one service: what a service's declaration is built on.

``Platform.configure`` builds the pieces that need no connection yet (engine, Redis client,
unit-of-work factory, fault registry); ``Platform.service`` adds the service's migrations,
subscriptions, routes and components and returns the ``Service`` the shell runs
(``shared.app.declaration`` does both from a service's declaration). Everything that talks to
Kafka is created when the app starts, inside the running event loop (aiokafka binds to it),
and nothing connects at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware

from shared.app.service import Component, Service
from shared.consuming.consumer import ConsumerRunner
from shared.consuming.faults import KEYS, FaultRegistry, FaultSpec, Keyed, business_fault
from shared.consuming.inbox import Deduplicator
from shared.consuming.subscriptions import Subscription
from shared.contracts.catalogue import Catalogue
from shared.contracts.topics import Topics, ensure_topics
from shared.observability.metrics import Metric, gauge
from shared.publishing.outbox import OutboxRelay, backlog_metrics
from shared.publishing.producer import build_producer
from shared.publishing.purger import Purge, RetentionPurger
from shared.settings import PlatformSettings, kafka_client_options
from shared.storage.db import UnitOfWorkFactory, make_engine
from shared.storage.migrations import upgrade_to_head

__all__ = ["Platform"]

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=PlatformSettings)
Subject = TypeVar("Subject", bound=Keyed)
Params = ParamSpec("Params")
Decision = TypeVar("Decision")
Part = TypeVar("Part")


@dataclass
class Platform(Generic[SettingsT]):
    """The shared infrastructure of one service process."""

    settings: SettingsT
    engine: AsyncEngine
    redis: Redis
    topics: Topics
    units: UnitOfWorkFactory
    faults: FaultRegistry | None
    """None when failure injection is switched off (``SAGAKIT_FAULT_INJECTION=false``)."""
    _built: dict[object, object] = field(default_factory=dict, init=False, repr=False)

    def once(self, build: Callable[[Platform[SettingsT]], Part]) -> Part:
        """``build(self)``, built once per platform: a part that several of a declaration's
        factories hand out (the explorer's routes and its admin routes share one)."""
        if build not in self._built:
            self._built[build] = build(self)
        return self._built[build]  # type: ignore[return-value]

    @classmethod
    def configure(
        cls, settings: SettingsT, catalogue: Catalogue[Any], faults: frozenset[str]
    ) -> Platform[SettingsT]:
        """The platform for ``settings`` and the events of ``catalogue``; ``faults`` are the
        fault kinds this service accepts."""
        engine = make_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        topics = Topics(catalogue, settings.topic_prefix)
        return cls(
            settings=settings,
            engine=engine,
            redis=Redis.from_url(settings.redis_url),
            topics=topics,
            units=UnitOfWorkFactory(engine, topics),
            faults=(
                FaultRegistry(faults, spec_type=FaultSpec.keyed_by(_keys_name(catalogue)))
                if settings.fault_injection
                else None
            ),
        )

    def business_fault(
        self,
        kind: str,
        rule: Callable[Concatenate[Subject, Params], Decision],
        outcome: Callable[Concatenate[Subject, Params], Decision],
    ) -> Callable[Concatenate[Subject, Params], Decision]:
        """``rule`` with the ``kind`` fault in front of it, or ``rule`` alone when failure
        injection is off (``shared.consuming.faults.business_fault``)."""
        return business_fault(kind, self.faults, rule, outcome)

    def service(
        self,
        *,
        migrations: Path,
        consumers: Mapping[str, Sequence[Subscription]],
        routers: Sequence[APIRouter] = (),
        admin_routers: Sequence[APIRouter] = (),
        middleware: Sequence[Middleware] = (),
        components: Sequence[Component] = (),
        purges: Sequence[Purge] = (),
        description: str = "",
    ) -> Service:
        """The service the shell runs: its migrations folder, consumer groups, routes, the
        components of its own, started after the platform's runtime and stopped before it,
        and the retention rules of its own tables (run with the platform's)."""
        runtime = Runtime(self, migrations, consumers, purges)
        return Service(
            settings=self.settings,
            engine=self.engine,
            redis=self.redis,
            faults=self.faults,
            components=[runtime, *components],
            routers=routers,
            admin_routers=admin_routers,
            middleware=middleware,
            probes={"kafka": runtime.ping_kafka, "consumer groups": runtime.check_consuming},
            description=description,
        )


def _keys_name(catalogue: Catalogue[Any]) -> str:
    """What ``POST /faults`` calls the keys a fault applies to: the plural of the catalogue's
    key field (``thing_id`` -> ``thing_ids``)."""
    return f"{catalogue.key_field}s" if catalogue.key_field else KEYS


@dataclass
class Runtime:
    """What runs while the app lives: the producer, the outbox relay, the retention purger,
    the consumer runners."""

    platform: Platform[Any]
    migrations: Path
    consumers: Mapping[str, Sequence[Subscription]]
    purges: Sequence[Purge] = ()
    """Retention rules of the service's own tables, besides the outbox's and the inbox's."""
    producer: AIOKafkaProducer | None = field(default=None, init=False)
    relay: OutboxRelay | None = field(default=None, init=False)
    purger: RetentionPurger | None = field(default=None, init=False)
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
        # Its own task and connection: a slow purge never holds up the relay
        # (shared.publishing.purger).
        self.purger = RetentionPurger.from_settings(settings, self.purges)
        await self.purger.start()
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
        if self.purger is not None:
            await self.purger.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def ping_kafka(self) -> None:
        if self.producer is None:
            raise RuntimeError("not started yet")
        await self.producer.client.fetch_all_metadata()

    async def check_consuming(self) -> None:
        # Until its first assignment an instance consumes nothing: "ready" before that would
        # let a caller (make up, a test) count on an instance that is not working yet. After
        # it, a group whose polls stopped coming back consumes nothing either.
        waiting = [runner.group_id for runner in self.runners if not runner.joined]
        if waiting or not self.runners:
            raise RuntimeError(f"not yet assigned in {', '.join(waiting) or 'any group'}")
        for runner in self.runners:
            runner.check_polling()

    def partitions(self) -> dict[str, dict[str, list[int]]]:
        """Per consumer group, the partitions of each topic this process owns right now."""
        owned: dict[str, dict[str, list[int]]] = {}
        for runner in self.runners:
            topics = owned.setdefault(runner.group_id, {})
            for tp in sorted(runner.assigned_partitions):
                topics.setdefault(tp.topic, []).append(tp.partition)
        return owned

    async def metrics(self) -> list[Metric]:
        """The relay's and the consumer groups' metric families, the outbox backlog, and the
        sizes of the dead-letter topics of the topics this service consumes."""
        families: list[Metric] = []
        if self.relay is not None:
            families += self.relay.metrics()
            families += await backlog_metrics(self.platform.engine)
        if self.purger is not None:
            families += self.purger.metrics()
        for runner in self.runners:
            families += await runner.metrics()
        if self.runners:
            families += await self._dead_letter_sizes()
        return families

    async def _dead_letter_sizes(self) -> list[Metric]:
        # Every service reports the dead-letter topics of what it consumes (a topic's DLQ
        # holds what every group gave up on, so several services report one topic: the
        # dashboard takes the max). No service is special, and none needs wiring for it.
        dlqs = sorted({Topics.dlq(topic) for runner in self.runners for topic in runner.topics})
        try:
            sizes = await self.runners[0].dead_letter_sizes(dlqs)
        except Exception as error:  # /metrics answers anyway, without the sizes
            log.warning("dead-letter topics' sizes not measured: %r", error)
            return []
        return [
            gauge(
                "sagakit_dlq_records",
                "Records a dead-letter topic holds (end minus start offsets)",
                ("topic",),
                {(topic,): size for topic, size in sizes.items()},
            )
        ]

    async def _migrate(self) -> None:
        # Under an advisory lock: instances starting together migrate one after the other.
        await upgrade_to_head(self.platform.engine, self.migrations)
