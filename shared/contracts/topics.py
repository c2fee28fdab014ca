"""The topics: one per event type of a catalogue (``shared.contracts.catalogue``), and DLQs.

A topic's name is its event type in kebab case (``ThingHappened`` -> ``thing-happened``), and
its dead-letter topic adds ``-dlq``. An optional prefix lets several independent systems (or
test runs) share one cluster without seeing each other's records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, overload

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from shared.contracts.catalogue import Catalogue
from shared.contracts.events import Event, Record, event_headers

__all__ = [
    "DLQ_SUFFIX",
    "Topics",
    "alter_topic_config",
    "encode",
    "ensure_topics",
    "existing_partitions",
    "kebab",
    "records_behind",
]

log = logging.getLogger(__name__)

DLQ_SUFFIX = "-dlq"

RETENTION_MS = "retention.ms"
# DescribeConfigs' config_source of a setting made on the topic itself (not a broker default).
_DYNAMIC_TOPIC_CONFIG = 1


class NamedEventType(Protocol):
    @classmethod
    def type_name(cls) -> str: ...


def kebab(event_type: str) -> str:
    """``ThingHappened`` -> ``thing-happened``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", event_type).lower()


@dataclass(frozen=True, slots=True)
class Topics:
    """Names the topics of ``catalogue``, with an optional prefix for shared clusters."""

    catalogue: Catalogue[Any]
    prefix: str = ""

    def for_event(self, event_type: str | type[NamedEventType]) -> str:
        """The topic that carries events of this type."""
        name = event_type if isinstance(event_type, str) else event_type.type_name()
        known = self.catalogue.type_names()
        if name not in known:
            raise ValueError(f"{name!r} is not in the event catalogue: {', '.join(known)}")
        return f"{self.prefix}{kebab(name)}"

    @staticmethod
    def dlq(topic: str) -> str:
        """The dead-letter topic of ``topic``."""
        return f"{topic}{DLQ_SUFFIX}"

    def all(self, include_dlq: bool = True) -> list[str]:
        """Every topic of the catalogue, and each one's dead-letter topic unless told not to."""
        names = [self.for_event(event_type) for event_type in self.catalogue.type_names()]
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
    dlq_retention_ms: int | None = None,
) -> list[str]:
    """Create whichever of ``names`` do not exist yet; return the ones created.

    Existing topics are left as they are (their partition count is not changed: growing it
    would move keys to other partitions and break per-key ordering), with one exception:
    given ``dlq_retention_ms`` (-1: keep for ever), every dead-letter topic among ``names`` is
    created with that ``retention.ms`` and an existing one is brought to it. A dead letter
    waits for a person to fix its cause and replay it; the broker's default retention (7 days)
    would delete it unreplayed, without a word.
    """
    unique = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in unique if name not in existing]
        created = await _create(
            admin,
            missing,
            partitions=partitions,
            replication_factor=replication_factor,
            min_insync_replicas=min_insync_replicas,
            dlq_retention_ms=dlq_retention_ms,
        )
        if dlq_retention_ms is not None:
            dead_letter_topics = [
                name for name in unique if name not in created and name.endswith(DLQ_SUFFIX)
            ]
            await _bring_retention_to(admin, dead_letter_topics, dlq_retention_ms)
        return created
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient,
    names: list[str],
    *,
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int,
    dlq_retention_ms: int | None,
) -> list[str]:
    """Create ``names``; return those this call created (not those someone else just did)."""

    def config(name: str) -> dict[str, str]:
        settings = {"min.insync.replicas": str(min_insync_replicas)}
        if dlq_retention_ms is not None and name.endswith(DLQ_SUFFIX):
            settings[RETENTION_MS] = str(dlq_retention_ms)
        return settings

    if not names:
        return []
    new = [
        NewTopic(name, partitions, replication_factor, topic_configs=config(name)) for name in names
    ]
    response = await admin.create_topics(new)
    created = []
    for result in response.to_object()["topic_errors"]:
        name, code = result["topic"], result["error_code"]
        if code == TopicAlreadyExistsError.errno:
            # Another instance created it between our listing and our request: fine.
            log.debug("topic %s created concurrently by someone else", name)
        elif code:
            raise RuntimeError(
                f"could not create topic {name}: {result['error_message']} (Kafka error {code})"
            )
        else:
            created.append(name)
    if created:
        log.info(
            "created topics %s (%d partitions, rf %d)", created, partitions, replication_factor
        )
    return created


async def _bring_retention_to(
    admin: AIOKafkaAdminClient, names: list[str], retention_ms: int
) -> None:
    """Set ``retention.ms`` on existing topics whose value differs, keeping their other settings."""
    if not names:
        return
    wanted = str(retention_ms)
    overrides = await _topic_overrides(admin, names)
    changes = {
        name: {**current, RETENTION_MS: wanted}
        for name, current in overrides.items()
        if current.get(RETENTION_MS) != wanted
    }
    if not changes:
        return
    await _replace_overrides(admin, changes)
    log.info("set %s=%s on %s", RETENTION_MS, wanted, list(changes))


async def alter_topic_config(
    admin: AIOKafkaAdminClient, topic: str, changes: Mapping[str, str], removed: Iterable[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Set ``changes`` and remove ``removed`` among a topic's own settings, keeping the others;
    its settings before and after. A key in ``removed`` the topic does not set is a KeyError
    (the broker's default applies already: deleting it would do nothing)."""
    (before,) = (await _topic_overrides(admin, [topic])).values()
    gone = set(removed)
    if missing := sorted(gone - set(before)):
        raise KeyError(missing[0])
    after = {key: value for key, value in before.items() if key not in gone} | dict(changes)
    await _replace_overrides(admin, {topic: after})
    return before, after


async def _replace_overrides(
    admin: AIOKafkaAdminClient, overrides: Mapping[str, Mapping[str, str]]
) -> None:
    """Make each topic's own settings exactly ``overrides[topic]``.

    aiokafka has only the legacy AlterConfigs request, which replaces a topic's whole set of
    overrides: callers read each topic's current overrides first and send them back with
    their change, or altering retention would silently drop, say, its ``min.insync.replicas``.
    """
    changes = [
        ConfigResource(ConfigResourceType.TOPIC, name, dict(configs))
        for name, configs in overrides.items()
    ]
    for response in await admin.alter_configs(changes):
        for resource in response.to_object()["resources"]:
            if resource["error_code"]:
                raise RuntimeError(
                    f"cannot alter {resource['resource_name']}: {resource['error_message']} "
                    f"(Kafka error {resource['error_code']})"
                )


async def _topic_overrides(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, str]]:
    """Each topic's own settings (set on the topic, not inherited from the broker)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    overrides: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            name = resource["resource_name"]
            if resource["error_code"]:
                raise RuntimeError(
                    f"could not read the settings of topic {name}: {resource['error_message']} "
                    f"(Kafka error {resource['error_code']})"
                )
            overrides[name] = {
                entry["config_names"]: entry["config_value"]
                for entry in resource["config_entries"]
                if entry["config_source"] == _DYNAMIC_TOPIC_CONFIG
                and entry["config_value"] is not None
            }
    return overrides


@overload
def records_behind(end: int, committed: int) -> int: ...
@overload
def records_behind(end: int, committed: int | None) -> int | None: ...
def records_behind(end: int, committed: int | None) -> int | None:
    """A consumer group's lag on one partition: the log's end offset minus the group's
    committed offset, never below 0 (a committed offset read just before the end moved);
    None when the group has committed nothing there. The one place this is computed: the
    consumers' lag gauge, ``sagakit groups describe`` and the explorer's groups page."""
    return None if committed is None else max(end - committed, 0)


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


def encode(event: Event, topics: Topics, traceparent: str | None = None) -> Record:
    """The record that carries ``event``: on its type's topic, keyed by its entity's id."""
    return Record(
        topic=topics.for_event(event.event_type),
        key=event.entity_key.encode(),
        value=event.to_json(),
        headers=event_headers(event, traceparent),
    )
