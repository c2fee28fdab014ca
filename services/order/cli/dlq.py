"""``sagakit dlq groups | replay-group T``: the dead letters grouped by topic, consumer group
and error type in the order service's dead-letter index, and a group replayed as a bulk
action (``services.order.cli.bulk``: the count first, paced, resumable). Added to the
platform's ``dlq`` group: the order service's ``COMMANDS`` name it ``dlq``
(``shared.ops.cli.plugins``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from services.order.cli.admin_api import admin_call
from services.order.cli.bulk import run_bulk
from shared.ops.cli.config import config
from shared.ops.cli.durations import parse_duration
from shared.ops.cli.output import emit_json, say, table

__all__ = ["app"]

app = typer.Typer()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
def groups(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The dead letters by topic, consumer group and error type: how many, of how many
    sagas, first and last seen (the order service's index), the largest group first."""
    found = admin_call(config(ctx), "GET", "/dead-letters/groups")
    if as_json:
        emit_json(found)
        return
    table(
        ["dead-letter topic", "group", "error type", "records", "sagas", "first seen", "last seen"],
        [
            [
                g["topic"],
                g["consumer_group"],
                g["error_type"],
                g["count"],
                g["orders"],
                g["first_seen"],
                g["last_seen"],
            ]
            for g in found
        ],
    )
    say(f"{sum(g['count'] for g in found)} dead letter(s) in {len(found)} group(s)")


# dlq replay-group


@app.command("replay-group")
def replay_group(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="The dead-letter topic (full name).")],
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Those this consumer group gave up on.")
    ] = None,
    error_type: Annotated[
        str | None, typer.Option("--error-type", "-e", help="Those of this error type.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Dead-lettered at or after: an ISO 8601 time, or a duration ago (1h)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Dead-lettered before: an ISO 8601 time, or a duration ago."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show how many and which sagas; send nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the replay to its end.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Replay a group of dead letters (as dlq groups shows them) or a time range, the count
    and the sagas first. Sent paced by the order service, each for the group that gave up
    on it; a dead letter a bulk replay sent is not selected again."""
    body = {
        "topic": topic,
        "consumer_group": group,
        "error_type": error_type,
        "since": _moment(since, "--since"),
        "until": _moment(until, "--until"),
    }
    run_bulk(
        config(ctx),
        "/bulk/replay",
        body,
        items="dead letter(s)",
        verb="replay",
        dry_run=dry_run,
        yes=yes,
        wait=wait,
        as_json=as_json,
    )


def _moment(text: str | None, option: str) -> str | None:
    """An ISO 8601 time (UTC unless it says), or a duration before now (``1h``, ``PT30M``)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return (datetime.now(UTC) - parse_duration(text, option)).isoformat()
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
