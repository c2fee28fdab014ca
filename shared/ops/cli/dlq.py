"""``sagakit dlq list | show T | replay T``: watching the dead letters and replaying them.

The records are read by ``shared.ops.replay`` (from the beginning to the end as it was, in no
consumer group), which also re-publishes them: each to its ``dlq.original.topic``, key,
value and original headers as first published, for the group that dead-lettered it alone
(``sagakit.replay.group``), one copy per group and record. A replayed event that was handled
already changes nothing, because every consumer deduplicates by ``event_id``; so replaying
twice is safe, and a dead letter replayed before its cause was fixed lands in the DLQ again.
A dead letter older than the inbox's retention (``SAGAKIT_INBOX_RETENTION_HOURS``) is
refused, since the inbox may have forgotten it, unless ``--past-inbox-retention`` is given.

A system may add commands to this group (the reference system's ``dlq groups`` and
``dlq replay-group``: ``shared.ops.cli.plugins``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import typer

from shared.ops.cli.audit import record
from shared.ops.cli.config import Config, config
from shared.ops.cli.kafka import consumer, run
from shared.ops.cli.output import CliError, emit_json, iso_ms, say, table
from shared.ops.cli.render import header_map, print_record, record_json
from shared.ops.replay import (
    DeadLetter,
    ReplayPlan,
    forgotten_reason,
    forgotten_summary,
    original_topic,
    plan_replay,
    read_dead_letters,
    replay_headers,
    republish,
)
from shared.publishing.replay_target import REPLAY_GROUP_HEADER

__all__ = ["app", "dlq_summary", "print_dlq_summary"]

app = typer.Typer(help="Dead letters: count them, read them, replay them.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_SHOW_LIMIT = 20


def _read(cfg: Config, topic: str, **kwargs: Any) -> Any:
    """``read_dead_letters``, a missing topic as a one-line error."""

    async def read() -> list[DeadLetter]:
        try:
            return await read_dead_letters(cfg.kafka_options(), topic, **kwargs)
        except LookupError as error:
            raise CliError(f"{error}; sagakit dlq list shows the dead-letter topics") from error

    return read()


# dlq list


@app.command("list")
def list_dlqs(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Each dead-letter topic of the catalogue: how many records, the oldest and newest, and
    the error types."""
    cfg = config(ctx)
    found = run(cfg, dlq_summary(cfg))
    if as_json:
        emit_json(found)
        return
    print_dlq_summary(found)


async def dlq_summary(cfg: Config) -> list[dict[str, Any]]:
    """What ``dlq list`` shows, as JSON-ready dicts (the demo prints it too)."""
    async with consumer(cfg) as reader:
        existing = await reader.topics()
    names = [name for name in cfg.topics.all() if name.endswith("-dlq") and name in existing]
    rows = []
    for name in names:
        letters = await read_dead_letters(cfg.kafka_options(), name)
        times = sorted(_failed_at(letter) for letter in letters)
        errors = Counter(header_map(letter).get("dlq.error.type", "?") for letter in letters)
        rows.append(
            {
                "topic": name,
                "count": len(letters),
                "oldest": times[0] if times else None,
                "newest": times[-1] if times else None,
                "error_types": dict(errors.most_common()),
            }
        )
    return rows


def print_dlq_summary(rows: list[dict[str, Any]]) -> None:
    table(
        ["dead-letter topic", "records", "oldest", "newest", "error types"],
        [
            [
                row["topic"],
                row["count"],
                row["oldest"],
                row["newest"],
                ", ".join(f"{kind} x{n}" for kind, n in row["error_types"].items()) or None,
            ]
            for row in rows
        ],
    )
    say(f"{sum(row['count'] for row in rows)} dead letter(s) in {len(rows)} topic(s)")


def _failed_at(letter: DeadLetter) -> str:
    stamp = header_map(letter).get("dlq.failed_at")
    return stamp or iso_ms(getattr(letter, "timestamp", None)) or ""


# dlq show


@app.command()
def show(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The dead-letter topic (full name).")],
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="At most N records, oldest first.")
    ] = DEFAULT_SHOW_LIMIT,
    as_json: JsonOption = False,
) -> None:
    """The dead letters with their dlq.* headers (where, which group, why, when), oldest
    first. --json: one JSON object per line."""
    cfg = config(ctx)
    letters = run(cfg, _read(cfg, topic, limit=limit))
    for letter in letters:
        if as_json:
            emit_json(record_json(letter), compact=True)
        else:
            print_record(letter)
    if not as_json:
        say(f"{len(letters)} dead letter(s) shown from {topic}")


# dlq replay


@app.command()
def replay(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The dead-letter topic (full name).")],
    event_id: Annotated[
        list[str] | None,
        typer.Option("--event-id", help="Replay the dead letter of this event (repeatable)."),
    ] = None,
    key: Annotated[
        list[str] | None,
        # The reference system's word for the key its events declare (Event.key_field).
        typer.Option("--order-id", help="Replay the dead letters of this key (repeatable)."),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed; publish nothing.")
    ] = False,
    past_inbox_retention: Annotated[
        bool,
        typer.Option(
            "--past-inbox-retention",
            help="Replay dead letters older than the inbox's retention too (they are refused "
            "otherwise: the inbox may have forgotten them, and a replay could apply them twice).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-publish dead letters to the topics they came from, once their cause is fixed.

    Each goes to the consumer group that dead-lettered it alone, one copy per group and
    record. A replayed event that was handled already has no second effect (the consumers'
    inbox), so replaying twice is safe; a dead letter older than the inbox's retention
    (SAGAKIT_INBOX_RETENTION_HOURS) is refused unless --past-inbox-retention is given.
    """
    cfg = config(ctx)
    if not (event_id or key or every):
        raise typer.BadParameter("say which: --event-id ID, --order-id ID or --all")
    if every and (event_id or key):
        raise typer.BadParameter("--all replays everything: leave out --event-id and --order-id")
    match = _matcher(set(event_id or []), set(key or []))
    memory = None if past_inbox_retention else cfg.settings.inbox_retention()
    plan = run(cfg, _replay(cfg, topic, match, memory, dry_run))
    replayed = [_described(letter) for letter in plan.send]
    refused = [
        {**_described(letter), "reason": forgotten_reason(letter, age, memory or age)}
        for letter, age in plan.forgotten
    ]
    if as_json:
        emit_json({"topic": topic, "dry_run": dry_run, "records": replayed, "refused": refused})
        return
    table(
        ["to topic", "key", "event", "event id", "for group", "from"],
        [
            [r["to"], r["key"], r["event_type"], r["event_id"], r["group"], r["from"]]
            for r in replayed
        ],
    )
    if plan.repeats:
        say(
            f"{len(plan.repeats)} dead letter(s) not sent: a newer dead letter of the same "
            "record for the same group is"
        )
    for row in refused:
        say(f"refused {row['reason']}")
    if refused and memory is not None:
        say(forgotten_summary(len(refused), memory))
    verb = "would replay" if dry_run else "replayed"
    say(f"{verb} {len(replayed)} dead letter(s) from {topic}")


async def _replay(
    cfg: Config,
    topic: str,
    match: Callable[[DeadLetter], bool],
    memory: timedelta | None,
    dry_run: bool,
) -> ReplayPlan:
    letters = await _read(cfg, topic, match=match)
    placeable = [letter for letter in letters if original_topic(letter)]
    if len(placeable) < len(letters):
        say(f"{len(letters) - len(placeable)} record(s) without dlq.original.topic: skipped")
    plan = plan_replay(placeable, memory=memory)
    if not dry_run:
        await republish(cfg.kafka_options(), plan.send)
        where = [f"{letter.topic}[{letter.partition}]@{letter.offset}" for letter in plan.send]
        await record(cfg, "dead_letters.replayed", topic, len(plan.send), {"records": where[:100]})
    return plan


def _described(letter: DeadLetter) -> dict[str, Any]:
    headers = header_map(letter)
    return {
        "to": original_topic(letter),
        "key": letter.key.decode(errors="replace") if letter.key is not None else None,
        "event_type": headers.get("event_type"),
        "event_id": _event_id(letter),
        "group": dict(replay_headers(letter)).get(REPLAY_GROUP_HEADER, b"").decode() or None,
        "from": f"{letter.topic}[{letter.partition}]@{letter.offset}",
    }


def _event_id(letter: DeadLetter) -> str | None:
    """The ``event_id`` header, else the value's ``event_id`` (None for bytes that are not
    an event)."""
    header = header_map(letter).get("event_id")
    if header:
        return header
    try:
        value = json.loads(letter.value or b"")
    except ValueError:
        return None
    return str(value["event_id"]) if isinstance(value, dict) and "event_id" in value else None


def _matcher(event_ids: set[str], entity_keys: set[str]) -> Callable[[DeadLetter], bool]:
    """A dead letter of one of these events or keys; every one when neither is given."""
    keys = {key.encode() for key in entity_keys}

    def matches(letter: DeadLetter) -> bool:
        if not event_ids and not keys:
            return True
        return letter.key in keys or _event_id(letter) in event_ids

    return matches
