"""The ``sagakit`` command: its root options and its command groups.

A new group is a module with a ``typer.Typer`` called ``app``, added to ``GROUPS``; a new
top-level command is a function added to ``COMMANDS``. A system adds its own groups through
the entry point group ``sagakit.commands`` (``shared.ops.cli.plugins``).

Failures print one line on stderr and exit non-zero: 1 when something could not be done
(Kafka or a service unreachable, a missing topic, a refused reset), 2 when the command line
itself is wrong. Only a bug in sagakit shows a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from shared.ops.cli import audit, chaos, dlq, groups, records, stack, topics
from shared.ops.cli.config import DEFAULT_TIMEOUT_S, Config
from shared.ops.cli.plugins import add_to_groups, installed_commands

__all__ = ["app", "main"]

GROUPS: list[tuple[str, typer.Typer]] = [
    ("topics", topics.app),
    ("groups", groups.app),
    ("dlq", dlq.app),
    ("stack", stack.app),
]
COMMANDS: list[Callable[..., Any]] = [records.produce, records.tail, audit.audit]
PASS_THROUGH_COMMANDS: list[Callable[..., Any]] = [chaos.chaos, chaos.verify]


class OneLineErrors(TyperGroup):
    """The root command: every error as one line (typer would draw a box of several)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        # aiokafka logs every refused connection and retry; the command reports what matters.
        kafka_log = logging.getLogger("aiokafka")
        level = kafka_log.level
        kafka_log.setLevel(logging.CRITICAL + 1)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("sagakit: interrupted", err=True)
            status = 130
        except typer.TyperException as error:
            # typer carries its own copy of click (private): its errors are told apart by
            # what they have, a usage error by its context and status 2.
            if type(error).__name__ == "NoArgsIsHelpError":
                error.show()  # type: ignore[attr-defined]  # a group named alone: its help
            else:
                typer.echo(f"sagakit: {_one_line(error.format_message())}{_hint(error)}", err=True)
            status = error.exit_code
        else:
            status = result if isinstance(result, int) else 0
        finally:
            kafka_log.setLevel(level)
        if standalone_mode:
            sys.exit(status)
        return status


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _hint(error: typer.TyperException) -> str:
    """Where to read how the command is used, after a usage error."""
    ctx = getattr(error, "ctx", None)
    if error.exit_code != 2 or ctx is None:
        return ""
    return f" (see: {ctx.command_path} --help)"


app = typer.Typer(
    cls=OneLineErrors,
    name="sagakit",
    help=(
        "Operate a sagakit system: its topics, records, consumer groups, dead letters, "
        "local stack and the commands it adds. Settings: --env-file, else "
        "./.stack/stack.env, else the SAGAKIT_* environment (which wins over the file)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
for name, group in add_to_groups(GROUPS, installed_commands()):
    app.add_typer(group, name=name)
for command in COMMANDS:
    app.command()(command)
# Their options are deploy.chaos's own, --help included: everything passes through.
for command in PASS_THROUGH_COMMANDS:
    app.command(context_settings=chaos.PASS_THROUGH, add_help_option=False)(command)


@app.callback()
def root(
    ctx: typer.Context,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="A stack.env to read (default: ./.stack/stack.env)."),
    ] = None,
    bootstrap: Annotated[
        str | None,
        typer.Option("--bootstrap", help="Kafka bootstrap servers (default: the settings')."),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", min=0.1, help="Seconds a command may take (tail --follow: none)."
        ),
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    ctx.obj = Config(env_file=env_file, bootstrap=bootstrap, timeout_s=timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run the command line ``argv`` (default ``sys.argv[1:]``)."""
    logging.basicConfig(level=logging.WARNING, format="sagakit: %(message)s")
    command = typer.main.get_command(app)
    status: int = command.main(
        list(sys.argv[1:] if argv is None else argv), prog_name="sagakit", standalone_mode=False
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
