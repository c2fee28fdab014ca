"""``sagakit stack up | down | status``: what ``make up``, ``make down`` and ``make status`` do."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from shared.cli.output import CliError, emit_json, table

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


@app.command()
def up(profile: ProfileOption = "dev") -> None:
    """Start whatever is not running and return once every part answers; writes
    .stack/stack.env."""
    from deploy.localstack.errors import StackError
    from deploy.localstack.stack import up as start

    try:
        start(profile)
    except StackError as error:
        raise CliError(str(error)) from error


@app.command()
def down(profile: ProfileOption = "dev") -> None:
    """Stop exactly what up started."""
    from deploy.localstack.errors import StackError
    from deploy.localstack.stack import down as stop

    try:
        stop(profile)
    except StackError as error:
        raise CliError(str(error)) from error


@app.command()
def status(
    profile: ProfileOption = "dev",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """What runs where, with pids and each service's restarts."""
    from deploy.localstack.errors import StackError
    from deploy.localstack.stack import status as rows

    try:
        found = rows(profile)
    except StackError as error:
        raise CliError(str(error)) from error
    if as_json:
        emit_json([asdict(row) for row in found])
        return
    table(["component", "where", "pid", "state"], [list(asdict(r).values()) for r in found])
