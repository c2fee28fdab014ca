"""How far a consumer group has read, as a moment: its read horizon.

A group's read horizon is the latest moment ``T`` such that the group has processed (and
committed) every record its topics held at ``T``. Whatever was in Kafka before ``T`` is known
to the group's service; what it does not know yet was not there. A service that decides from
the absence of events (the order service's deadline sweeper: "no outcome for 30 s") must decide
as of its horizon, not as of now: while its own consumers are behind (after an outage, under
load), an outcome may sit in its backlog, and "now" would take a service that is late for one
that is away.

``ReadHorizon.advance(now)`` marks ``now`` with the topics' end offsets, asks the group's
committed offsets, and returns the latest marked moment the group has read past (None until it
has read past one). Marks are taken at the caller's pace (a sweep every few seconds), so the
horizon trails a group that keeps up by about one interval and its commit period. Three requests
a call (the partitions' starts and ends, the group's offsets) on clients kept open, and the
topics' partitions once a minute.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

__all__ = ["PARTITIONS_TTL_S", "ReadHorizon"]

PARTITIONS_TTL_S = 60.0
"""How long the topics' partitions, once asked, are taken as known."""


class ReadHorizon:
    """The read horizon of consumer group ``group_id`` over ``topics``.

    At most ``max_marks`` moments wait to be read past; past that the oldest is dropped,
    which only makes the horizon later to move (never ahead of what was read).
    """

    def __init__(
        self,
        client_options: Mapping[str, Any],
        group_id: str,
        topics: Sequence[str],
        *,
        max_marks: int = 1000,
    ) -> None:
        self._options = dict(client_options)
        self._group = group_id
        self._topics = set(topics)
        self._marks: deque[tuple[datetime, dict[TopicPartition, int]]] = deque(maxlen=max_marks)
        self._reached: datetime | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._known: tuple[float, list[TopicPartition]] | None = None

    async def advance(self, now: datetime) -> datetime | None:
        """Mark ``now``, then return the latest marked moment the group has read past.

        ``now`` must be taken before the call: the ends asked for then hold every record
        written before it. Raises what Kafka raises (the clients are opened again next time).
        """
        try:
            admin, consumer = await self._clients()
            partitions = await self._partitions(admin)
            ends: dict[TopicPartition, int] = {}
            starts: dict[TopicPartition, int] = {}
            if partitions:
                ends = await consumer.end_offsets(partitions)
                starts = await consumer.beginning_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(self._group)
        except BaseException:
            await self.close()
            raise
        self._marks.append((now, ends))
        # What retention removed needs no reading: the group resumes at the log's start.
        read = dict(starts)
        for tp, meta in committed.items():
            read[tp] = max(read.get(tp, 0), meta.offset)
        while self._marks and _read_past(read, self._marks[0][1]):
            self._reached = self._marks.popleft()[0]
        return self._reached

    async def _partitions(self, admin: AIOKafkaAdminClient) -> list[TopicPartition]:
        """The topics' partitions, asked again every ``PARTITIONS_TTL_S``: the metadata of
        every topic of the cluster, a large answer on a shared cluster, for a list that
        rarely changes (and not by name: a broker may create a topic it is asked about)."""
        if self._known is None or time.monotonic() - self._known[0] > PARTITIONS_TTL_S:
            described = await admin.describe_topics()
            partitions = [
                TopicPartition(topic["topic"], p["partition"])
                for topic in described
                if topic["topic"] in self._topics
                for p in topic["partitions"]
            ]
            self._known = (time.monotonic(), partitions)
        return self._known[1]

    async def close(self) -> None:
        """Close the clients (``advance`` opens them again)."""
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self._options)
            await admin.start()
            self._admin = admin
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self._options, group_id=None, enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return self._admin, self._consumer


def _read_past(read: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]) -> bool:
    """Whether the group's committed offsets ``read`` reach every end in ``ends`` (an empty
    partition needs nothing committed)."""
    return all(read.get(tp, 0) >= end for tp, end in ends.items())
