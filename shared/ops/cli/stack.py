"""``sagakit stack up | down | status``: what ``make up``, ``make down`` and ``make status`` do.

They run ``python -m deploy.localstack`` of this checkout as a command, as make does: the
platform imports nothing of the local stack (tests/unit/test_layers.py), and a sagakit
installed without the checkout's deploy/ says so in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Annotated

import typer

from shared.ops.cli.checkout import has_module
from shared.ops.cli.output import CliError, emit_json, table

__all__ = ["app"]

app = typer.Typer(
    help="The local stack (Kafka, PostgreSQL, Redis and the services), without Docker.",
    no_args_is_help=True,
)

ProfileOption = Annotated[
    str,
    typer.Option(
        "--profile", help="dev: what make up runs; test: the test suite's; bench: make bench's."
    ),
]


def _localstack(*args: str, capture: bool = False) -> str:
    """Run ``python -m deploy.localstack ARGS``; its error line becomes this command's."""
    if not has_module("deploy.localstack"):
        raise CliError("the local stack is part of a sagakit checkout (deploy/): run it there")
    done = subprocess.run(
        [sys.executable, "-m", "deploy.localstack", *args],
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        # Its last line says why ("error: ...", or argparse's "prog: error: ...").
        raise CliError(lines[-1].split("error: ", 1)[-1])
    if done.stderr and not capture:
        sys.stderr.write(done.stderr)
    return done.stdout or ""


@app.command()
def up(profile: ProfileOption = "dev") -> None:
    """Start whatever is not running and return once every part answers; writes
    .stack/stack.env."""
    _localstack("up", "--profile", profile)


@app.command()
def down(profile: ProfileOption = "dev") -> None:
    """Stop exactly what up started."""
    _localstack("down", "--profile", profile)


@app.command()
def status(
    profile: ProfileOption = "dev",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """What runs where, with pids and each service's restarts."""
    rows = json.loads(_localstack("status", "--profile", profile, "--json", capture=True))
    if as_json:
        emit_json(rows)
        return
    table(["component", "where", "pid", "state"], [list(row.values()) for row in rows])
