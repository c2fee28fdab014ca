"""``sagakit chaos`` and ``sagakit verify``: ``make chaos``'s run and its checks.

They run ``python -m deploy.chaos run|verify`` with the arguments given (``--help`` lists
them; every option is also a ``CHAOS_*`` variable), as ``sagakit stack`` runs the local stack:
the chaos tool acts on the local stack's processes, which the platform does not import.
"""

from __future__ import annotations

import subprocess
import sys

import typer

from shared.ops.cli.checkout import has_module
from shared.ops.cli.output import CliError

__all__ = ["chaos", "verify"]

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _deploy_chaos(command: str, args: list[str]) -> None:
    if not has_module("deploy.chaos"):
        raise CliError("sagakit chaos is part of a sagakit checkout (deploy/chaos): run it there")
    status = subprocess.run([sys.executable, "-m", "deploy.chaos", command, *args], check=False)
    raise typer.Exit(status.returncode)


def chaos(ctx: typer.Context) -> None:
    """Place sagas while killing service instances, a broker, Redis and PostgreSQL, then
    verify the books (options: sagakit chaos --help)."""
    _deploy_chaos("run", list(ctx.args))


def verify(ctx: typer.Context) -> None:
    """Check a stack's books: every saga terminal, money and stock conserved, nothing done
    twice, statuses agreeing; non-zero on any violation (options: sagakit verify --help)."""
    _deploy_chaos("verify", list(ctx.args))
