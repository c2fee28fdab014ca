"""``sagakit sagas cancel-stuck``: the stuck sagas ended in bulk, compensated as a timeout."""

from __future__ import annotations

from typing import Annotated

import typer

from services.order.cli.bulk import run_bulk
from shared.ops.cli.config import config

__all__ = ["app"]

app = typer.Typer(help="Sagas in bulk (through the order service).", no_args_is_help=True)


@app.command("cancel-stuck")
def cancel_stuck(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show how many and which; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow it to its end.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Cancel every stuck saga that has not ended, as the deadline sweeper cancels one that
    timed out (OrderCancelled, reason timed_out: payment refunds, inventory releases). The
    count and the sagas first; a saga that moves on before its turn is left alone."""
    run_bulk(
        config(ctx),
        "/bulk/cancel-stuck",
        {},
        items="stuck saga(s)",
        verb="cancel",
        dry_run=dry_run,
        yes=yes,
        wait=wait,
        as_json=as_json,
    )
