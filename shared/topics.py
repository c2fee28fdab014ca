"""The topic catalogue: one topic per event type, each with its dead-letter topic.

A topic's name is its event type in kebab case (``OrderCreated`` -> ``order-created``), and
its dead-letter topic adds ``-dlq``. An optional prefix lets several independent systems (or
test runs) share one cluster without seeing each other's records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

__all__ = ["DLQ_SUFFIX", "EVENT_TYPES", "Topics", "ensure_topics", "existing_partitions", "kebab"]

log = logging.getLogger(__name__)

DLQ_SUFFIX = "-dlq"

# The catalogue (docs/events.md), in saga order.
EVENT_TYPES: tuple[str, ...] = (
    "OrderCreated",
    "PaymentProcessed",
    "PaymentFailed",
    "InventoryReserved",
    "InventoryFailed",
    "OrderShipped",
    "ShippingFailed",
    "PaymentRefunded",
    "InventoryReleased",
    "OrderCompleted",
    "OrderCancelled",
)


class NamedEventType(Protocol):
    @classmethod
    def type_name(cls) -> str: ...


def kebab(event_type: str) -> str:
    """``PaymentProcessed`` -> ``payment-processed``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", event_type).lower()


@dataclass(frozen=True, slots=True)
class Topics:
    """Names the topics of the catalogue, with an optional prefix for shared clusters."""

    prefix: str = ""

    def for_event(self, event_type: str | type[NamedEventType]) -> str:
        """The topic that carries events of this type."""
        name = event_type if isinstance(event_type, str) else event_type.type_name()
        if name not in EVENT_TYPES:
            raise ValueError(f"{name!r} is not in the event catalogue: {', '.join(EVENT_TYPES)}")
        return f"{self.prefix}{kebab(name)}"

    @staticmethod
    def dlq(topic: str) -> str:
        """The dead-letter topic of ``topic``."""
        return f"{topic}{DLQ_SUFFIX}"

    def all(self, include_dlq: bool = True) -> list[str]:
        """Every topic of the catalogue, and each one's dead-letter topic unless told not to."""
        names = [self.for_event(event_type) for event_type in EVENT_TYPES]
        if include_dlq:
            names += [self.dlq(name) for name in names]
        return names


async def ensure_topics(
    client_options: Mapping[str, Any],
    names: Iterable[str],
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
) -> list[str]:
    """Create whichever of ``names`` do not exist yet; return the ones created.

    Existing topics are left as they are (their partition count is not changed: growing it
    would move keys to other partitions and break per-order ordering).
    """
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in dict.fromkeys(names) if name not in existing]
        if not missing:
            return []
        config = {"min.insync.replicas": str(min_insync_replicas)}
        new = [
            NewTopic(name, partitions, replication_factor, topic_configs=config) for name in missing
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            # Another instance created them between our listing and our request: fine.
            log.debug("topics created concurrently by someone else: %s", missing)
        log.info(
            "created topics %s (%d partitions, rf %d)", missing, partitions, replication_factor
        )
        return missing
    finally:
        await admin.close()


async def existing_partitions(client_options: Mapping[str, Any]) -> dict[str, list[TopicPartition]]:
    """Every topic on the cluster and its partitions, in order.

    Asks for the metadata of all topics rather than of some by name: a broker with
    ``auto.create.topics.enable`` creates a topic it is asked about by name.
    """
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        described = await admin.describe_topics()
    finally:
        await admin.close()
    return {
        topic["topic"]: sorted(
            TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]
        )
        for topic in described
    }
