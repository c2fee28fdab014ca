"""``sagakit bulk list | show ID``, and how every bulk command runs: the count first.

A bulk command (``dlq replay-group``, ``sagas cancel-stuck``) asks the order service for a
dry run (a ``GET``: a read-only token may) and prints how many items and which sagas; with
``--dry-run`` that is all. Otherwise
it asks for confirmation (``--yes`` does not) and starts the action with the count shown:
the service refuses when its selection no longer holds that count, so what is acted upon is
what was shown. The order service then does the items paced (SAGAKIT_BULK_RATE_PER_SECOND)
and resumes an action a crash cut short; ``--wait`` follows it to its end.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from services.order.cli.admin_api import admin_call
from shared.ops.cli.config import Config, config
from shared.ops.cli.output import CliError, emit_json, say, table

__all__ = ["app", "run_bulk"]

app = typer.Typer(help="Bulk actions: their progress.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
POLL_S = 0.5
SHOWN = 20


def run_bulk(
    cfg: Config,
    path: str,
    body: dict[str, Any],
    *,
    items: str,
    verb: str,
    dry_run: bool,
    yes: bool,
    wait: bool,
    as_json: bool,
) -> None:
    """Preview ``path``'s action, then (unless ``dry_run``) confirm and start it."""
    given = {key: value for key, value in body.items() if value is not None}
    preview = admin_call(cfg, "GET", path, params=given)
    count = preview["count"]
    if not as_json:
        _print_preview(preview, items)
    if dry_run or count == 0:
        if as_json:
            emit_json({"preview": preview})
        elif count:
            say(f"dry run: nothing changed; without --dry-run it would {verb} them")
        return
    if not yes and not typer.confirm(f"{verb} {count} {items}?"):
        raise CliError("nothing done")
    started = admin_call(cfg, "POST", path, json={**given, "expected": count})
    action_id = started["action_id"]
    final = _wait(cfg, action_id) if wait else None
    if as_json:
        emit_json({"preview": preview, "started": started, "progress": final})
        return
    say(f"started bulk action {action_id}: {started['total']} {items}")
    if final is None:
        say(f"sagakit bulk show {action_id} follows it")
    else:
        say(f"done: {_outcomes(final)}")


def _print_preview(preview: dict[str, Any], items: str) -> None:
    sagas = f" of {preview['orders']} saga(s)" if preview["orders"] != preview["count"] else ""
    say(f"{preview['count']} {items}{sagas}")
    ids = preview["order_ids"]
    if ids:
        more = f" (and {preview['orders'] - SHOWN} more)" if preview["orders"] > SHOWN else ""
        say(f"sagas: {', '.join(ids[:SHOWN])}{more}")
    if preview.get("refused"):
        say(
            f"{preview['refused']} of them older than the inboxes' memory "
            "(SAGAKIT_INBOX_RETENTION_HOURS): refused, not replayed"
        )


def _wait(cfg: Config, action_id: str) -> dict[str, Any]:
    """Poll the action until it is finished; its last progress."""
    while True:
        progress: dict[str, Any] = admin_call(cfg, "GET", f"/bulk/{action_id}")
        if progress["finished_at"] is not None:
            return progress
        time.sleep(POLL_S)


def _outcomes(progress: dict[str, Any]) -> str:
    counted = ", ".join(f"{n} {outcome}" for outcome, n in sorted(progress["outcomes"].items()))
    return f"{progress['done']} of {progress['total']} ({counted or 'none yet'})"


@app.command("list")
def list_actions(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The newest bulk actions and how far each is."""
    found = admin_call(config(ctx), "GET", "/bulk")
    if as_json:
        emit_json(found)
        return
    table(
        ["action", "kind", "started", "finished", "progress"],
        [
            [a["action_id"], a["kind"], a["created_at"], a["finished_at"], _outcomes(a)]
            for a in found
        ],
    )


@app.command()
def show(
    ctx: typer.Context,
    action_id: Annotated[str, typer.Argument(help="The action's id.")],
    as_json: JsonOption = False,
) -> None:
    """One bulk action: what it selected, and how many items are done, by outcome."""
    found = admin_call(config(ctx), "GET", f"/bulk/{action_id}")
    if as_json:
        emit_json(found)
        return
    say(f"bulk action {found['action_id']}: {found['kind']}, started {found['created_at']}")
    selected = ", ".join(f"{k}={v}" for k, v in found["selection"].items() if v is not None)
    if selected:
        say(f"selected: {selected}")
    state = f"finished {found['finished_at']}" if found["finished_at"] else "running"
    say(f"{state}: {_outcomes(found)}")
