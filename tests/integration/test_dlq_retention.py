"""Dead letters never expire: the DLQ topics' retention, set as a service starts (real Kafka)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import services.shipping
from services.events import CATALOGUE
from shared.app.platform import Platform, Runtime
from shared.consuming.faults import INFRASTRUCTURE_KINDS
from shared.contracts.topics import Topics, ensure_topics
from shared.settings import PlatformSettings
from tests.infra import Infrastructure

ONE_DAY_MS = str(24 * 3600 * 1000)
MIGRATIONS = Path(services.shipping.__file__).with_name("migrations")


@pytest.fixture
async def admin(infra: Infrastructure) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def topic_settings(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    [resource] = response.to_object()["resources"]
    return {entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]}


async def settled_settings(
    admin: AIOKafkaAdminClient, topic: str, name: str, expected: str
) -> dict[str, str]:
    """The topic's settings once ``name`` reads ``expected``, or as they are after 10 s.

    A broker applies an AlterConfigs through its metadata log: a read just after the change
    may still see the old value.
    """
    deadline = time.monotonic() + 10
    while (found := await topic_settings(admin, topic))[name] != expected:
        if time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)
    return found


async def create_keeping_one_day(admin: AIOKafkaAdminClient, *topics: str) -> None:
    configs = {"retention.ms": ONE_DAY_MS, "min.insync.replicas": "1", "cleanup.policy": "delete"}
    await admin.create_topics([NewTopic(t, 1, 1, topic_configs=configs) for t in topics])


async def test_a_service_start_makes_an_existing_dead_letter_topic_keep_its_records_for_ever(
    infra: Infrastructure, admin: AIOKafkaAdminClient
) -> None:
    topics = Topics(CATALOGUE, infra.topic_prefix("dlq-retention"))
    created = topics.for_event("OrderShipped")
    dead_letters = Topics.dlq(created)
    await create_keeping_one_day(admin, created, dead_letters)
    settings = PlatformSettings(
        service_name="shipping",
        kafka_bootstrap=infra.kafka_bootstrap,
        redis_url=infra.redis_url,
        database_url=await infra.create_database("dlq_retention"),
        topic_prefix=topics.prefix,
    )
    platform = Platform.configure(settings, CATALOGUE, INFRASTRUCTURE_KINDS)
    runtime = Runtime(platform, MIGRATIONS, consumers={})
    await runtime.start()
    try:
        existing = await settled_settings(admin, dead_letters, "retention.ms", "-1")
        made_at_start = await topic_settings(admin, Topics.dlq(topics.for_event("OrderCreated")))
        plain = await topic_settings(admin, created)
    finally:
        await runtime.stop()
        await platform.redis.aclose()
        await platform.engine.dispose()

    assert existing["retention.ms"] == "-1"
    # The topic's other settings survive the change (Kafka's AlterConfigs replaces them all).
    assert existing["cleanup.policy"] == "delete"
    assert existing["min.insync.replicas"] == "1"
    assert made_at_start["retention.ms"] == "-1"
    # Only dead letters are kept for ever: an event topic keeps what it was given.
    assert plain["retention.ms"] == ONE_DAY_MS


async def test_the_dead_letter_retention_is_a_setting(
    infra: Infrastructure, admin: AIOKafkaAdminClient
) -> None:
    dead_letters = Topics.dlq(infra.topic("retention-setting"))
    await create_keeping_one_day(admin, dead_letters)
    options = {"bootstrap_servers": infra.kafka_bootstrap}
    thirty_days_ms = 30 * 24 * 3600 * 1000

    created = await ensure_topics(options, [dead_letters], dlq_retention_ms=thirty_days_ms)

    assert created == []
    settled = await settled_settings(admin, dead_letters, "retention.ms", str(thirty_days_ms))
    assert settled["retention.ms"] == str(thirty_days_ms)
    # Without a retention to apply, ensure_topics leaves existing topics alone.
    await ensure_topics(options, [dead_letters])
    assert (await topic_settings(admin, dead_letters))["retention.ms"] == str(thirty_days_ms)
