"""``sagakit produce`` and ``sagakit tail``: kafka-console-producer and -consumer, for events.

``tail`` reads without a consumer group unless ``--group``: it assigns every partition of
the topics itself, so it never takes partitions away from a running service. With
``--group G`` it reads from G's committed offsets and commits what it has shown, as
``kafka-console-consumer --group`` does, but without joining G: it is refused while G has
members (a service's group, for one), so it cannot steal their records.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from shared.ops.cli.config import Config, config
from shared.ops.cli.group_state import describe_group, refuse_if_active
from shared.ops.cli.kafka import admin_client, consumer, producer, require_topics, run
from shared.ops.cli.output import CliError, emit_json, say
from shared.ops.cli.render import print_record, record_json

__all__ = ["produce", "tail"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NEWEST_BY_DEFAULT = 10
POLL_MS = 500


# produce


def produce(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The topic's full name (prefix included).")],
    key: Annotated[
        str,
        typer.Option(
            "--key", "-k", help="The record key: the id of the entity its event is about."
        ),
    ],
    value: Annotated[
        str | None,
        typer.Argument(help="The value; without it, one record per line of standard input."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="A header NAME=VALUE (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Publish records with a key (and headers) to a topic that exists.

    A value that is an event (JSON with event_type and event_id) gets the event_type and
    event_id headers the services write, unless --header sets them.
    """
    cfg = config(ctx)
    headers = [_header(item) for item in header or []]
    values = [value] if value is not None else [line for line in sys.stdin.read().splitlines()]
    values = [v for v in values if v.strip()]
    if not values:
        raise CliError("nothing to produce: give a VALUE or lines on standard input")
    sent = run(cfg, _produce(cfg, topic, key, values, headers))
    if as_json:
        emit_json(sent)
        return
    for where in sent:
        say(f"{where['topic']}[{where['partition']}]@{where['offset']}")


async def _produce(
    cfg: Config, topic: str, key: str, values: list[str], headers: list[tuple[str, bytes]]
) -> list[dict[str, Any]]:
    await require_topics(cfg, [topic])  # sending to a missing topic may create it
    async with producer(cfg) as writer:
        pending = [
            await writer.send(
                topic, value.encode(), key=key.encode(), headers=_with_event_headers(value, headers)
            )
            for value in values
        ]
        stored = [await each for each in pending]
    return [{"topic": m.topic, "partition": m.partition, "offset": m.offset} for m in stored]


def _header(item: str) -> tuple[str, bytes]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise typer.BadParameter(f"{item!r}: write NAME=VALUE", param_hint="--header")
    return name, value.encode()


def _with_event_headers(value: str, headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    try:
        event = json.loads(value)
    except ValueError:
        return headers
    if not isinstance(event, dict):
        return headers
    given = {name for name, _ in headers}
    added = [
        (name, str(event[name]).encode())
        for name in ("event_type", "event_id")
        if name in event and name not in given
    ]
    return headers + added


# tail


@dataclass(frozen=True)
class Tail:
    """What to read: where to start, which key, how many."""

    from_beginning: bool
    group: str | None
    key: bytes | None
    limit: int | None
    follow: bool

    @property
    def newest_only(self) -> bool:
        """Without a start of its own, tail shows the newest records, as tail(1) does."""
        return not self.from_beginning and self.group is None

    def matches(self, record: Any) -> bool:
        return self.key is None or record.key == self.key


def tail(
    ctx: typer.Context,
    topics: Annotated[
        list[str], typer.Argument(help="One or more topics (full names), read together.")
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record kept.")
    ] = False,
    group: Annotated[
        str | None,
        typer.Option(
            "--group", "-g", help="Read from this group's offsets and commit what is shown."
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="Only records with this key (an entity's id).")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            help=f"At most N records (default: the newest {NEWEST_BY_DEFAULT}, unless "
            "--from-beginning or --group).",
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then wait for new records until Ctrl-C.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show records: key, partition, offset, timestamp, headers, and the value decoded
    (indented JSON for an event). --json: one JSON object per line.

    By default the newest records (10, or --limit), in time order, as tail(1) shows a file's
    last lines; --from-beginning starts at the oldest. --group G starts at G's committed
    offsets and commits what it shows, without joining G: refused while G has members.
    """
    cfg = config(ctx)
    plan = Tail(from_beginning, group, key.encode() if key is not None else None, limit, follow)
    show: Callable[[Any], None] = (
        (lambda record: emit_json(record_json(record), compact=True)) if as_json else print_record
    )
    run(cfg, _tail(cfg, topics, plan, show), bounded=not follow)


async def _tail(cfg: Config, topics: list[str], plan: Tail, show: Callable[[Any], None]) -> None:
    if plan.group is not None:
        async with admin_client(cfg) as admin:
            refuse_if_active(await describe_group(admin, plan.group), "tailing as the group")
    # Without a group, positions are set by _seek; "earliest" is only the fallback of a reset
    # that may still be running when it does ("latest" would then skip the records).
    reset = "latest" if plan.group is not None and not plan.from_beginning else "earliest"
    by_topic = await require_topics(cfg, topics)
    partitions = [tp for topic in dict.fromkeys(topics) for tp in by_topic[topic]]
    async with consumer(cfg, group=plan.group, reset=reset) as reader:
        reader.assign(partitions)
        ends: dict[TopicPartition, int] = await reader.end_offsets(partitions)
        await _seek(reader, partitions, ends, plan)
        backlog, later = await _read_to(reader, ends)
        matching = sorted(filter(plan.matches, backlog), key=_in_time)
        if plan.newest_only:
            shown = matching[-(plan.limit or NEWEST_BY_DEFAULT) :]
        else:
            shown = matching[: plan.limit] if plan.limit else matching
        for record in shown:
            show(record)
        if plan.group is not None:
            await reader.commit(_consumed(ends, matching, shown))
        if not plan.follow:
            return
        budget = None if plan.newest_only or plan.limit is None else plan.limit - len(shown)
        await _follow(reader, later, plan, show, budget)


async def _seek(
    reader: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    ends: dict[TopicPartition, int],
    plan: Tail,
) -> None:
    if plan.group is not None:
        return  # the group's committed offsets, or the reset policy where it has none
    firsts = await reader.beginning_offsets(partitions)
    # The newest N of a key may be anywhere: then every record is read, and the last N shown.
    wanted = (
        None if plan.from_beginning or plan.key is not None else plan.limit or NEWEST_BY_DEFAULT
    )
    for tp in partitions:
        reader.seek(tp, firsts[tp] if wanted is None else max(firsts[tp], ends[tp] - wanted))


async def _read_to(
    reader: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> tuple[list[Any], list[Any]]:
    """Every record up to ``ends``, and those read past them meanwhile (for ``--follow``)."""
    backlog: list[Any] = []
    later: list[Any] = []
    while waiting := [tp for tp in ends if await reader.position(tp) < ends[tp]]:
        batches = await reader.getmany(*waiting, timeout_ms=POLL_MS)
        for tp, records in batches.items():
            for record in records:
                (backlog if record.offset < ends[tp] else later).append(record)
    return backlog, later


def _in_time(record: Any) -> tuple[int, str, int, int]:
    return record.timestamp, record.topic, record.partition, record.offset


def _consumed(
    ends: dict[TopicPartition, int], matching: list[Any], shown: list[Any]
) -> dict[TopicPartition, int]:
    """What a group has consumed: everything up to the first record ``--limit`` held back."""
    printed = {(r.topic, r.partition, r.offset) for r in shown}
    offsets = dict(ends)
    for record in matching:
        tp = TopicPartition(record.topic, record.partition)
        if (record.topic, record.partition, record.offset) not in printed:
            offsets[tp] = min(offsets[tp], record.offset)
    return offsets


async def _follow(
    reader: AIOKafkaConsumer,
    first: list[Any],
    plan: Tail,
    show: Callable[[Any], None],
    budget: int | None,
) -> None:
    """Show new records as they come until ``budget`` is spent (or forever)."""
    pending = first
    while True:
        matching = sorted(filter(plan.matches, pending), key=_in_time)
        shown = matching if budget is None else matching[:budget]
        for record in shown:
            show(record)
        sys.stdout.flush()
        if plan.group is not None and pending:
            positions = {tp: await reader.position(tp) for tp in reader.assignment()}
            await reader.commit(_consumed(positions, matching, shown))
        if budget is not None:
            budget -= len(shown)
            if budget <= 0:
                return
        batches = await reader.getmany(timeout_ms=POLL_MS)
        pending = [record for records in batches.values() for record in records]
