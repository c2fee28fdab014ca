"""``sagakit audit``: the audit trail; and how the stack-changing commands record themselves.

The commands that change the system on purpose (``groups reset-offsets --execute``,
``groups delete``, ``topics create | delete | alter-config``, ``dlq replay``) call
``record`` once they are done, under the operator's name (``SAGAKIT_OPERATOR``, else the
login name and host). A record that cannot be written fails the command with a line saying
the change is done but not recorded: nobody should believe it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from shared.ops.cli.config import Config, config
from shared.ops.cli.kafka import run
from shared.ops.cli.output import CliError, emit_json, say, table
from shared.publishing.audit import AuditTrail, AuditUnavailable, operator_name

__all__ = ["audit", "record"]

DEFAULT_LIMIT = 50


async def record(
    cfg: Config,
    action: str,
    target: str,
    count: int,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Write the audit entry of a command that changed the system."""
    trail = AuditTrail(cfg.settings, "sagakit")
    try:
        await trail.record(operator_name(cfg.settings.operator), action, target, count, details)
    except AuditUnavailable as error:
        raise CliError(f"done, but not recorded in the audit trail: {error}") from error


def audit(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="The newest N entries.")
    ] = DEFAULT_LIMIT,
    action: Annotated[
        str | None, typer.Option("--action", help="Only actions that start with this.")
    ] = None,
    who: Annotated[str | None, typer.Option("--who", help="Only those of this name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Who replayed, cancelled, reset offsets, injected or cleared faults, and changed
    topics or groups: newest first, with when, what, on what and how many."""
    cfg = config(ctx)
    entries = run(cfg, AuditTrail(cfg.settings, "sagakit").newest(limit))
    chosen = [
        e
        for e in entries
        if (action is None or e.action.startswith(action)) and (who is None or e.who == who)
    ]
    if as_json:
        for entry in chosen:
            emit_json(vars(entry), compact=True)
        return
    table(
        ["when", "who", "action", "on", "how many", "by"],
        [[e.at[:19].replace("T", " "), e.who, e.action, e.target, e.count, e.by] for e in chosen],
    )
    say(f"{len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'} of the newest {limit}")
