"""The audit trail: who did what to the system, when, and to how many, kept in Kafka.

Every action that changes the system on purpose is recorded: a dead letter replayed, a bulk
action started, a fault injected or cleared (by the services' admin endpoints, under the name
of the admin token used), and the command line's stack-changing commands (an offset reset, a
group or topic deleted, a topic created or altered, a replay), under the operator's name.
One record per action, in one topic (``sagakit-audit`` after the topic prefix): the
services and the command line write to it alike, none needs the other, and it is kept for
ever (``retention.ms`` -1), with one partition so that it reads in the order written.

Writing waits for the broker's acknowledgement (``acks=all``, idempotent): an action whose
record could not be written says so (``AuditUnavailable``) rather than pass unrecorded.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import TopicPartition

from shared.contracts.topics import existing_partitions
from shared.settings import PlatformSettings, kafka_client_options

__all__ = ["AUDIT_TOPIC", "AuditEntry", "AuditTrail", "AuditUnavailable", "operator_name"]

AUDIT_TOPIC = "sagakit-audit"
WRITE_TIMEOUT_S = 15.0
POLL_TIMEOUT_MS = 200


class AuditUnavailable(Exception):
    """The action's record could not be written to the audit topic."""


@dataclass(frozen=True)
class AuditEntry:
    """One action: who (a token's name, or the operator's), when, what, on what, how many."""

    who: str
    action: str
    """``fault.injected``, ``bulk.replay.started``, ``groups.offsets.reset``..."""
    target: str
    count: int
    details: dict[str, Any] = field(default_factory=dict)
    by: str = ""
    """What recorded it: a service's instance, or ``sagakit`` (the command line)."""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    """When it was done (ISO 8601, UTC): the trail is shown in this order."""

    @classmethod
    def from_json(cls, value: bytes) -> AuditEntry:
        found = json.loads(value)
        return cls(**{name: found[name] for name in cls.__dataclass_fields__ if name in found})


def operator_name(given: str | None = None) -> str:
    """Who runs the command line: ``given`` (``SAGAKIT_OPERATOR``), else the login name and
    host (the CLI acts on Kafka directly, with no token to name it)."""
    if given:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class AuditTrail:
    """Writes and reads the audit topic of the system ``settings`` describe."""

    def __init__(self, settings: PlatformSettings, recorder: str) -> None:
        self._settings = settings
        self._options = kafka_client_options(settings)
        self.topic = settings.topic_prefix + AUDIT_TOPIC
        self._recorder = recorder
        self._ensured = False

    async def record(
        self,
        who: str,
        action: str,
        target: str,
        count: int,
        details: Mapping[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Write one entry (done ``at``, default now) and wait for the broker to acknowledge
        it; ``AuditUnavailable`` when it cannot be written within ``WRITE_TIMEOUT_S``."""
        moment = (at or datetime.now(UTC)).isoformat()
        entry = AuditEntry(who, action, target, count, dict(details or {}), self._recorder, moment)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self._ensure_topic()
                producer = AIOKafkaProducer(**self._options, acks="all", enable_idempotence=True)
                await producer.start()
                try:
                    value = json.dumps(asdict(entry), default=str).encode()
                    await producer.send_and_wait(self.topic, value, key=action.encode())
                finally:
                    await producer.stop()
        except (KafkaError, OSError, TimeoutError) as error:
            raise AuditUnavailable(
                f"{action} on {target} by {who} not recorded in {self.topic}: "
                f"{type(error).__name__}: {error}"
            ) from error
        return entry

    async def newest(self, limit: int) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first (none while the topic does not exist)."""
        partitions = (await existing_partitions(self._options)).get(self.topic, [])
        if not partitions or limit < 1:
            return []
        consumer = AIOKafkaConsumer(
            **self._options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            consumer.assign(partitions)
            firsts = await consumer.beginning_offsets(partitions)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, max(firsts[tp], ends[tp] - limit))
            found: list[AuditEntry] = []
            behind = [tp for tp in partitions if firsts[tp] < ends[tp]]
            while behind:
                for records in (
                    await consumer.getmany(*behind, timeout_ms=POLL_TIMEOUT_MS)
                ).values():
                    found += [
                        AuditEntry.from_json(record.value)
                        for record in records
                        if record.value is not None
                    ]
                behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
        finally:
            await consumer.stop()
        # By when each action was done: records written in the background by several
        # processes may reach the topic in another order.
        found.sort(key=lambda entry: entry.at, reverse=True)
        return found[:limit]

    async def _ensure_topic(self) -> None:
        """Create the topic once: one partition, kept for ever (the broker's default
        retention would drop the trail after a week)."""
        if self._ensured:
            return
        settings = self._settings
        admin = AIOKafkaAdminClient(**self._options)
        await admin.start()
        try:
            if self.topic not in await admin.list_topics():
                configs = {
                    "retention.ms": "-1",
                    "min.insync.replicas": str(settings.topic_min_insync_replicas),
                }
                new = NewTopic(
                    self.topic, 1, settings.topic_replication_factor, topic_configs=configs
                )
                response = await admin.create_topics([new])
                for result in response.to_object()["topic_errors"]:
                    code = result["error_code"]
                    if code and code != TopicAlreadyExistsError.errno:
                        raise KafkaError(f"cannot create {self.topic}: {result['error_message']}")
        finally:
            await admin.close()
        self._ensured = True
