"""A consumer group as its coordinator sees it, and committing offsets for it from outside.

Offsets are committed for a group by a consumer that assigns the partitions itself and never
joins the group: the broker accepts such a commit only while the group has no members (a
member's generation would not match), so moving offsets can never race a running consumer.
Checked against Kafka 4.1: while the group is ``Stable`` the broker answers
``UnknownMemberIdError`` (aiokafka raises ``CommitFailedError``); once it is ``Empty`` the
commit succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import CommitFailedError, KafkaError, NonEmptyGroup, for_code
from aiokafka.protocol.admin import DeleteGroupsRequest
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared.ops.cli.config import Config
from shared.ops.cli.kafka import consumer
from shared.ops.cli.output import CliError

__all__ = [
    "GroupState",
    "Member",
    "commit_offsets",
    "delete_group",
    "describe_group",
    "refuse_if_active",
]

INACTIVE = ("Empty", "Dead")


@dataclass(frozen=True)
class Member:
    """One consumer in a group, and the partitions the group gave it."""

    member_id: str
    client_id: str
    host: str
    partitions: list[TopicPartition] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.client_id} on {self.host.lstrip('/')} ({self.member_id})"


@dataclass(frozen=True)
class GroupState:
    """What the group coordinator says of a group; ``Dead`` is also "no such group"."""

    group_id: str
    state: str
    protocol: str
    members: list[Member]

    @property
    def active(self) -> bool:
        return bool(self.members) or self.state not in INACTIVE

    def owner(self, tp: TopicPartition) -> Member | None:
        return next((m for m in self.members if tp in m.partitions), None)


async def describe_group(admin: AIOKafkaAdminClient, group_id: str) -> GroupState:
    (response,) = await admin.describe_consumer_groups([group_id])
    (found,) = response.groups
    error_code, _, state, protocol_type, protocol, members, *_ = found
    if error_code:
        raise for_code(error_code)(f"describing group {group_id}")
    return GroupState(
        group_id,
        state,
        protocol,
        [_member(member, protocol_type) for member in members],
    )


def _member(member: Any, protocol_type: str) -> Member:
    member_id, client_id, host, _metadata, assignment = member[:5]
    partitions: list[TopicPartition] = []
    if protocol_type == "consumer" and assignment:  # empty while the group rebalances
        partitions = ConsumerProtocolMemberAssignment.decode(assignment).partitions()
    return Member(member_id, client_id, host, sorted(partitions))


def refuse_if_active(group: GroupState, doing: str) -> None:
    """Stop ``doing`` when the group has members, naming them."""
    if not group.active:
        return
    who = "; ".join(map(str, group.members)) or "members joining"
    raise CliError(
        f"group {group.group_id} is {group.state} with {len(group.members)} member(s): {who}; "
        f"stop them before {doing}"
    )


async def commit_offsets(cfg: Config, group_id: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for a group without joining it (refused while it has members)."""
    async with consumer(cfg, group=group_id) as committer:
        committer.assign(list(offsets))
        try:
            await committer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
        except (CommitFailedError, KafkaError) as error:
            raise CliError(
                f"Kafka refused the commit for group {group_id} ({type(error).__name__}): "
                "did a member join meanwhile? sagakit groups describe shows it"
            ) from error


async def delete_group(admin: AIOKafkaAdminClient, group_id: str) -> None:
    """Delete a group and its offsets; the coordinator refuses while it has members.

    aiokafka's admin client has no call for it: the DeleteGroups request goes to the group's
    coordinator through the client's request path.
    """
    coordinator = await admin.find_coordinator(group_id)
    response = await admin._send_request(DeleteGroupsRequest([group_id]), coordinator)
    for group, code in response.results:
        if code == NonEmptyGroup.errno:
            raise CliError(f"group {group} has members again; stop them before deleting it")
        if code:
            raise for_code(code)(f"deleting group {group}")
