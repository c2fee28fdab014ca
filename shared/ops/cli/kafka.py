"""Kafka for one command: clients that close whatever happens, errors that say what to do.

``run`` is how every Kafka command runs its coroutine: bounded by ``--timeout``, with
aiokafka's failures turned into one line that names the bootstrap servers. aiokafka's own
log lines are silenced by ``app.main``: the one line here is the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.structs import TopicPartition

from shared.contracts.topics import existing_partitions
from shared.ops.cli.config import Config
from shared.ops.cli.output import CliError

__all__ = [
    "admin_client",
    "broker_error",
    "consumer",
    "producer",
    "require_topics",
    "run",
]

T = TypeVar("T")


def run(cfg: Config, work: Coroutine[Any, Any, T], *, bounded: bool = True) -> T:
    """Run ``work`` to its end (within ``--timeout`` unless not ``bounded``), failures as one
    line."""
    try:
        bootstrap = cfg.bootstrap_servers
    except CliError:
        work.close()  # never started: no "coroutine was never awaited" warning
        raise

    async def main() -> T:
        if not bounded:
            return await work
        async with asyncio.timeout(cfg.timeout_s):
            return await work

    try:
        return asyncio.run(main())
    except KafkaConnectionError as error:
        raise CliError(f"cannot reach Kafka at {bootstrap}: {error}") from error
    except TimeoutError as error:
        raise CliError(
            f"no answer within {cfg.timeout_s:g} s (Kafka at {bootstrap}); "
            "--timeout SECONDS to wait longer"
        ) from error
    except KafkaError as error:
        raise CliError(f"Kafka at {bootstrap}: {error}") from error


@asynccontextmanager
async def admin_client(cfg: Config) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(**cfg.kafka_options())
    try:
        await client.start()
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def consumer(
    cfg: Config, *, group: str | None = None, reset: str = "earliest"
) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer that is in no group unless told (``group``), commits only when told, and
    subscribes to nothing: the commands assign partitions themselves."""
    client = AIOKafkaConsumer(
        **cfg.kafka_options(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset=reset,
    )
    try:
        await client.start()
        # Lets the consumer's background task take its first step: aiokafka 0.14 cancels it
        # on stop, and one cancelled before it ran makes stop() raise CancelledError.
        await asyncio.sleep(0)
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def producer(cfg: Config) -> AsyncIterator[AIOKafkaProducer]:
    """Idempotent and ``acks=all``, as the services' producers are."""
    client = AIOKafkaProducer(**cfg.kafka_options(), acks="all", enable_idempotence=True)
    try:
        await client.start()
        yield client
    finally:
        await client.stop()


async def require_topics(cfg: Config, names: Collection[str]) -> dict[str, list[TopicPartition]]:
    """The partitions of each of ``names``; a one-line error naming the first one missing.

    Read from the metadata of all topics: a broker with ``auto.create.topics.enable``
    creates a topic it is asked about by name (so would a producer sending to it).
    """
    existing = await existing_partitions(cfg.kafka_options())
    for name in names:
        if name in existing:
            continue
        prefixed = cfg.settings.topic_prefix + name
        hint = (
            f"; did you mean {prefixed!r} (SAGAKIT_TOPIC_PREFIX)?"
            if prefixed != name and prefixed in existing
            else "; sagakit topics list shows them"
        )
        raise CliError(f"no topic {name!r} on Kafka at {cfg.bootstrap_servers}{hint}")
    return {name: existing[name] for name in names}


def broker_error(code: int) -> str:
    """A broker's error code in words: ``3`` -> ``UnknownTopicOrPartitionError (...)``."""
    error = for_code(code)
    return f"{error.__name__}: {error.description}" if error.description else error.__name__
