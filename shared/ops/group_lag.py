"""Consumer groups as the broker sees them: who owns which partition, and how far behind.

For each group: its state, its members (the client id names the service and instance:
``kafka_client_options`` sets ``<service>-<instance>``) with the partitions assigned to each,
and per partition the group's committed offset, the log's end offset and the lag between
them. Read with the admin client and a consumer in no group: nothing is committed and no
group is joined, so looking never moves anyone's position. A group's members come from the
command line's ``describe_group`` (shared/ops/cli/group_state.py), the one decoder of what the
coordinator says; ``sagakit groups describe`` shows ``read_group``'s view of one group, and
the lag itself is ``shared.contracts.topics.records_behind``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from shared.contracts.topics import existing_partitions, records_behind
from shared.ops.cli.group_state import GroupState, describe_group

__all__ = [
    "GroupMember",
    "GroupView",
    "PartitionLag",
    "committed_offset",
    "read_group",
    "read_groups",
]


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    """None: the group has committed nothing there yet."""
    end: int
    owner: str | None
    """The client id of the member that owns it; None when no member does."""
    owner_id: str | None = None
    """That member's id (unique where client ids repeat)."""

    @property
    def lag(self) -> int | None:
        """Records not yet committed; None without a committed offset."""
        return records_behind(self.end, self.committed)


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class GroupView:
    group: str
    state: str
    protocol: str
    members: tuple[GroupMember, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    def by_topic(self) -> dict[str, dict[int, PartitionLag]]:
        """The partitions of each topic, by partition number (topics in name order)."""
        topics: dict[str, dict[int, PartitionLag]] = {}
        for lag in self.partitions:
            topics.setdefault(lag.topic, {})[lag.partition] = lag
        return topics

    @property
    def partition_numbers(self) -> list[int]:
        """Every partition number any of its topics has (the columns of a table)."""
        return sorted({lag.partition for lag in self.partitions})


async def read_groups(client_options: Mapping[str, Any], prefix: str = "") -> list[GroupView]:
    """Every consumer group whose id starts with ``prefix``, by group id."""
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        listed = await admin.list_consumer_groups()
        ids = sorted({str(entry[0]) for entry in listed if str(entry[0]).startswith(prefix)})
        return await _views(client_options, admin, ids)
    finally:
        await admin.close()


async def read_group(client_options: Mapping[str, Any], group_id: str) -> GroupView | None:
    """One consumer group; None when the broker knows nothing of it (no members, no offsets)."""
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        (view,) = await _views(client_options, admin, [group_id])
    finally:
        await admin.close()
    return None if view.state == "Dead" and not view.partitions else view


async def _views(
    client_options: Mapping[str, Any], admin: AIOKafkaAdminClient, ids: Sequence[str]
) -> list[GroupView]:
    # One group per request (describe_group): aiokafka 0.14 fails to decode a response
    # describing many groups ("Buffer underrun decoding string").
    states = {group: await describe_group(admin, group) for group in ids}
    committed = {group: await admin.list_consumer_group_offsets(group) for group in ids}
    if not ids:
        return []
    # Offsets of a topic deleted since are left out: it has no end to measure lag against.
    existing = await existing_partitions(client_options)
    every = sorted(
        {
            tp
            for group in ids
            for tp in (*committed[group], *(p for m in states[group].members for p in m.partitions))
            if tp.topic in existing
        }
    )
    ends = await _end_offsets(client_options, every)
    return [_view(states[group], committed[group], ends) for group in ids]


async def _end_offsets(
    client_options: Mapping[str, Any], partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(**client_options, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
        return ends
    finally:
        await consumer.stop()


def committed_offset(committed: Mapping[TopicPartition, Any], tp: TopicPartition) -> int | None:
    """The group's committed offset of ``tp`` in ``list_consumer_group_offsets``'s answer;
    None when it has committed nothing there (absent, or -1)."""
    found = committed.get(tp)
    return found.offset if found is not None and found.offset >= 0 else None


def _view(
    state: GroupState, committed: Mapping[TopicPartition, Any], ends: Mapping[TopicPartition, int]
) -> GroupView:
    members = tuple(
        GroupMember(m.member_id, m.client_id, m.host.lstrip("/"), tuple(m.partitions))
        for m in state.members
    )
    owners = {tp: member for member in members for tp in member.partitions}
    partitions = []
    for tp in sorted(tp for tp in {*committed, *owners} if tp in ends):
        at = committed_offset(committed, tp)
        owner = owners.get(tp)
        partitions.append(
            PartitionLag(
                tp.topic,
                tp.partition,
                at,
                ends[tp],
                owner.client_id if owner else None,
                owner.member_id if owner else None,
            )
        )
    return GroupView(state.group_id, state.state, state.protocol, members, tuple(partitions))
