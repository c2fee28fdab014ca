"""The reference system's part of ``sagakit``: every service's command groups, found in its folder.

A service with commands of its own has a ``cli`` module (``services/<name>/cli.py``, or a
``cli/`` package) whose ``COMMANDS`` lists them as ``(name, typer.Typer)`` pairs; ``COMMANDS``
here gathers those of every declared service (``services.declarations()``, by declared port).
The reference application installs it in the entry point group ``sagakit.commands``
(``reference/pyproject.toml``: ``reference = "services.cli:COMMANDS"``), so a new service's
commands need no entry point of their own: its folder is enough.

Only ``sagakit`` imports this module: a service's own process never loads the command line.
"""

from __future__ import annotations

import importlib
import importlib.util

import typer

from services import declarations

__all__ = ["COMMANDS", "service_commands"]


def service_commands() -> list[tuple[str, typer.Typer]]:
    """The ``COMMANDS`` of every declared service's ``cli`` module, by the services' port."""
    found: list[tuple[str, typer.Typer]] = []
    for service in declarations():
        module = f"services.{service.name}.cli"
        if importlib.util.find_spec(module) is None:
            continue
        declared: list[tuple[str, typer.Typer]] = importlib.import_module(module).COMMANDS
        found += declared
    return found


COMMANDS = service_commands()
