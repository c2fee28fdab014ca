"""``sagakit groups list | describe G | reset-offsets G | delete G``: kafka-consumer-groups.sh's
verbs.

Lag is a partition's end offset minus the group's committed offset: the records the group
has not confirmed yet (read by ``shared.ops.group_lag``, as the explorer reads it). A reset
commits the new offsets for the group without joining it (``group_state.commit_offsets``),
refused while the group has members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from shared.ops.cli.audit import record
from shared.ops.cli.config import Config, config
from shared.ops.cli.durations import parse_duration
from shared.ops.cli.group_state import (
    commit_offsets,
    delete_group,
    describe_group,
    refuse_if_active,
)
from shared.ops.cli.kafka import admin_client, consumer, require_topics, run
from shared.ops.cli.output import CliError, emit_json, say, table, warn
from shared.ops.group_lag import committed_offset, read_group

__all__ = ["app", "group_report", "print_group_report"]

app = typer.Typer(
    help="Consumer groups: their members, offsets and lag; moving their offsets.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


# groups list


@app.command("list")
def list_groups(
    ctx: typer.Context,
    every: Annotated[
        bool, typer.Option("--all", help="Every group, not only those of SAGAKIT_TOPIC_PREFIX.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """The consumer groups, with their state and number of members."""
    cfg = config(ctx)
    found = run(cfg, _list(cfg, every))
    if as_json:
        emit_json(found)
        return
    table(["group", "state", "members"], [[g["group"], g["state"], g["members"]] for g in found])
    say(f"{len(found)} group(s)")


async def _list(cfg: Config, every: bool) -> list[dict[str, Any]]:
    prefix = "" if every else cfg.settings.topic_prefix
    async with admin_client(cfg) as admin:
        names = sorted(
            name for name, _ in await admin.list_consumer_groups() if name.startswith(prefix)
        )
        states = [await describe_group(admin, name) for name in names]
    return [
        {"group": state.group_id, "state": state.state, "members": len(state.members)}
        for state in states
    ]


# groups describe


@app.command()
def describe(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group id (prefix included).")],
    as_json: JsonOption = False,
) -> None:
    """State, members and what they own; committed offset, end offset and lag per partition
    and in total."""
    cfg = config(ctx)
    found = run(cfg, group_report(cfg, group))
    if as_json:
        emit_json(found)
        return
    print_group_report(found)


async def group_report(cfg: Config, group_id: str) -> dict[str, Any]:
    """What ``groups describe`` shows, as a JSON-ready dict (the demo prints it too)."""
    view = await read_group(cfg.kafka_options(), group_id)
    if view is None:
        raise CliError(f"no consumer group {group_id!r}; sagakit groups list shows them")
    return {
        "group": group_id,
        "state": view.state,
        "protocol": view.protocol,
        "members": [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "host": m.host,
                "partitions": [f"{tp.topic}[{tp.partition}]" for tp in m.partitions],
            }
            for m in view.members
        ],
        "partitions": [
            {
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "end": p.end,
                "lag": p.lag,
                "owner": p.owner_id,
            }
            for p in view.partitions
        ],
        "lag": view.total_lag,
    }


def print_group_report(found: dict[str, Any]) -> None:
    say(
        f"group {found['group']}: {found['state']}, {len(found['members'])} member(s), "
        f"total lag {found['lag']}"
    )
    if found["members"]:
        table(
            ["member", "client", "host", "partitions"],
            [
                [m["member_id"], m["client_id"], m["host"], len(m["partitions"])]
                for m in found["members"]
            ],
        )
    table(
        ["topic", "partition", "committed", "end", "lag", "owner"],
        [list(row.values()) for row in found["partitions"]],
    )


# groups reset-offsets


@app.command("reset-offsets")
def reset_offsets(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group id (prefix included).")],
    topic: Annotated[str, typer.Option("--topic", "-t", help="The topic whose offsets move.")],
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="To the oldest record kept.")
    ] = False,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="To the end: skip every record not read yet.")
    ] = False,
    to_offset: Annotated[
        int | None,
        typer.Option("--to-offset", min=0, help="To this offset (kept within each partition)."),
    ] = None,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            "--to-datetime",
            help="To the first record at or after this ISO 8601 time (UTC unless it says).",
        ),
    ] = None,
    shift_by: Annotated[
        int | None,
        typer.Option(
            "--shift-by",
            help="By N records from the committed offset: back if negative (kept within each "
            "partition; a partition with nothing committed is left alone).",
        ),
    ] = None,
    by_duration: Annotated[
        str | None,
        typer.Option(
            "--by-duration",
            help="To the first record written at most this long ago: PnDTnHnMnS (ISO 8601) "
            "or 1h30m, 2d, 45s.",
        ),
    ] = None,
    partition: Annotated[
        int | None, typer.Option("--partition", "-p", min=0, help="Only this partition.")
    ] = None,
    execute: Annotated[
        bool, typer.Option("--execute", help="Apply it; without this, a dry run.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Move a group's committed offsets on a topic: a dry run showing old and new offsets
    unless --execute. Refused while the group has members (stop its consumers first)."""
    cfg = config(ctx)
    target = _target(to_earliest, to_latest, to_offset, to_datetime, shift_by, by_duration)
    plan = run(cfg, _reset(cfg, group, topic, partition, target, execute))
    if as_json:
        emit_json(plan)
        return
    table(
        ["topic", "partition", "old", "new", "note"],
        [[topic, r["partition"], r["old"], r["new"], r["note"]] for r in plan["partitions"]],
    )
    if plan["executed"]:
        say(f"group {group}: offsets moved on {len(plan['partitions'])} partition(s) of {topic}")
    else:
        say("dry run: nothing changed; add --execute to apply")


@dataclass(frozen=True)
class Target:
    kind: str  # earliest, latest, offset, datetime, shift
    offset: int | None = None
    """The offset (``offset``), or how many records to move by (``shift``)."""
    at: datetime | None = None


def _target(
    earliest: bool,
    latest: bool,
    offset: int | None,
    moment: str | None,
    shift: int | None,
    duration: str | None,
) -> Target:
    # Made only once chosen: a wrong time or duration is reported only when it was the one.
    given: list[tuple[bool, Callable[[], Target]]] = [
        (earliest, lambda: Target("earliest")),
        (latest, lambda: Target("latest")),
        (offset is not None, lambda: Target("offset", offset=offset)),
        (moment is not None, lambda: Target("datetime", at=_parse_time(moment or ""))),
        (shift is not None, lambda: Target("shift", offset=shift)),
        (
            duration is not None,
            lambda: Target("datetime", at=datetime.now(UTC) - parse_duration(duration or "")),
        ),
    ]
    chosen = [make for wanted, make in given if wanted]
    if len(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one of --to-earliest, --to-latest, --to-offset N, --to-datetime ISO, "
            "--shift-by N, --by-duration D"
        )
    return chosen[0]()


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-05-01T12:00:00Z)",
            param_hint="--to-datetime",
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _reset(
    cfg: Config,
    group_id: str,
    topic: str,
    partition: int | None,
    target: Target,
    execute: bool,
) -> dict[str, Any]:
    async with admin_client(cfg) as admin:
        state = await describe_group(admin, group_id)
        committed = await admin.list_consumer_group_offsets(group_id)
    if execute:
        refuse_if_active(state, "resetting its offsets")
    elif state.active:
        warn(f"group {group_id} has {len(state.members)} member(s): --execute would be refused")
    partitions = (await require_topics(cfg, [topic]))[topic]
    async with consumer(cfg) as reader:
        if partition is not None:
            if TopicPartition(topic, partition) not in partitions:
                raise CliError(f"{topic} has no partition {partition} (it has {len(partitions)})")
            partitions = [TopicPartition(topic, partition)]
        olds = {tp: committed_offset(committed, tp) for tp in partitions}
        new = await _new_offsets(reader, partitions, target, olds)
    rows = []
    for tp in partitions:
        offset, note = new[tp]
        rows.append({"partition": tp.partition, "old": olds[tp], "new": offset, "note": note})
    moved = {tp: offset for tp, (offset, _) in new.items() if offset is not None}
    if execute and moved:
        await commit_offsets(cfg, group_id, moved)
        await record(
            cfg,
            "groups.offsets.reset",
            f"{group_id} on {topic}",
            len(moved),
            {"to": target.kind, "offsets": {str(tp.partition): o for tp, o in moved.items()}},
        )
    return {"group": group_id, "topic": topic, "executed": execute, "partitions": rows}


async def _new_offsets(
    reader: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    target: Target,
    committed: dict[TopicPartition, int | None],
) -> dict[TopicPartition, tuple[int | None, str]]:
    """Each partition's new offset (None: left alone), and a note when it was not the one
    asked for."""
    firsts = await reader.beginning_offsets(partitions)
    ends = await reader.end_offsets(partitions)
    if target.kind == "earliest":
        return {tp: (firsts[tp], "") for tp in partitions}
    if target.kind == "latest":
        return {tp: (ends[tp], "") for tp in partitions}
    if target.kind == "offset":
        assert target.offset is not None
        return {tp: _within(target.offset, firsts[tp], ends[tp]) for tp in partitions}
    if target.kind == "shift":
        assert target.offset is not None
        shifted: dict[TopicPartition, tuple[int | None, str]] = {}
        for tp in partitions:
            at = committed[tp]
            shifted[tp] = (
                (None, "nothing committed: left alone")
                if at is None
                else _within(at + target.offset, firsts[tp], ends[tp])
            )
        return shifted
    assert target.at is not None
    epoch_ms = int(target.at.timestamp() * 1000)
    found = await reader.offsets_for_times({tp: epoch_ms for tp in partitions})
    return {
        tp: (found[tp].offset, "") if found.get(tp) else (ends[tp], "nothing that late: the end")
        for tp in partitions
    }


def _within(offset: int, first: int, end: int) -> tuple[int | None, str]:
    if offset < first:
        return first, f"{offset} is gone: the first offset kept"
    if offset > end:
        return end, f"{offset} is past the end"
    return offset, ""


# groups delete


@app.command()
def delete(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group id (prefix included).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a consumer group and its committed offsets (kafka-consumer-groups.sh --delete).
    Refused while the group has members; a service started afterwards under that group
    begins where its auto.offset.reset says."""
    cfg = config(ctx)
    if not yes and not typer.confirm(f"delete consumer group {group} and its offsets?"):
        raise CliError("not deleted")
    run(cfg, _delete(cfg, group))
    if as_json:
        emit_json({"deleted": group})
    else:
        say(f"deleted consumer group {group}")


async def _delete(cfg: Config, group_id: str) -> None:
    async with admin_client(cfg) as admin:
        state = await describe_group(admin, group_id)
        if state.state == "Dead" and not await admin.list_consumer_group_offsets(group_id):
            raise CliError(f"no consumer group {group_id!r}; sagakit groups list shows them")
        refuse_if_active(state, "deleting it")
        await delete_group(admin, group_id)
    await record(cfg, "groups.deleted", group_id, 1)
