"""What the commands print: plain lines, tables, JSON, and the one-line error.

Tables go through rich; every cell is plain text (no rich markup, so a topic named
``[x]`` prints as it is). ``--json`` output is one JSON document on stdout, or one per line
for a following ``tail``, so a script can pipe it into ``jq``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["CliError", "emit_json", "iso_ms", "say", "table", "warn"]

# A pipe or a file is not a terminal: rich would fold tables at 80 columns.
NON_TERMINAL_WIDTH = 160


class CliError(typer.TyperException):
    """A failure the operator can act on: printed as one line, exit status 1."""


def _console() -> Console:
    # Made per call: tests and callers swap sys.stdout, and rich would keep the old one.
    console = Console(soft_wrap=False, highlight=False)
    if not console.is_terminal:
        console = Console(width=NON_TERMINAL_WIDTH, highlight=False)
    return console


def say(text: str = "") -> None:
    """One plain line on stdout."""
    typer.echo(text)


def warn(text: str) -> None:
    """One line on stderr that does not stop the command."""
    typer.echo(f"sagakit: {text}", err=True)


def table(
    header: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None
) -> None:
    """Rows under a header, aligned; ``None`` cells print as ``-``."""
    grid = Table(*header, title=title, title_justify="left", show_edge=False, pad_edge=False)
    for row in rows:
        grid.add_row(*(Text("-" if cell is None else str(cell)) for cell in row))
    _console().print(grid)


def emit_json(document: Any, *, compact: bool = False) -> None:
    """``document`` as JSON on stdout: indented, or on one line (``compact``)."""
    indent = None if compact else 2
    typer.echo(json.dumps(document, indent=indent, default=str, ensure_ascii=False))


def iso_ms(epoch_ms: int | None) -> str | None:
    """A Kafka timestamp (milliseconds since the epoch) as RFC 3339 UTC."""
    if epoch_ms is None or epoch_ms < 0:
        return None
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
