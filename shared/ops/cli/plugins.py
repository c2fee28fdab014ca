"""What a system adds to ``sagakit``: its event catalogue and its own commands.

The platform's command line knows no system. A system's package declares, in its
``pyproject.toml``, entry points in two groups, which ``sagakit`` reads when it starts:

- ``sagakit.catalogue``: one entry, the system's ``shared.contracts.catalogue.Catalogue``
  (for instance ``reference = "services.events:CATALOGUE"``): the topics ``sagakit dlq``
  lists and the events it reads. With several installed, ``SAGAKIT_CATALOGUE`` names one.
- ``sagakit.commands``: each entry a ``typer.Typer``, added as the command group of the
  entry's name (``bookings = "yourpackage.cli:app"`` makes ``sagakit bookings ...``), or a
  sequence of ``(name, typer.Typer)`` pairs, each added under its own name (what a system
  whose commands are found rather than listed hands in: the reference system's
  ``reference = "services.cli:COMMANDS"``). A group named like an earlier one adds its
  commands to that group (``dlq`` adds ``sagakit dlq groups`` to the platform's ``dlq``).

Entry points are read from the installed distributions' metadata: after changing them, the
package is installed again (``make install``). Without any, ``sagakit`` has the platform's
commands only.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import typer

from shared.contracts.catalogue import Catalogue
from shared.ops.cli.output import CliError

__all__ = [
    "CATALOGUE_GROUP",
    "COMMANDS_GROUP",
    "add_to_groups",
    "installed_catalogue",
    "installed_commands",
]

CATALOGUE_GROUP = "sagakit.catalogue"
COMMANDS_GROUP = "sagakit.commands"
CHOSEN_CATALOGUE = "SAGAKIT_CATALOGUE"


def installed_commands() -> list[tuple[str, typer.Typer]]:
    """Every command group installed in ``sagakit.commands``, by entry name."""
    groups: list[tuple[str, typer.Typer]] = []
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        groups += _named_groups(entry)
    return groups


def _named_groups(entry: EntryPoint) -> list[tuple[str, typer.Typer]]:
    """What one entry adds: a group under the entry's name, or pairs under their own names."""
    loaded = entry.load()
    if isinstance(loaded, typer.Typer):
        return [(entry.name, loaded)]
    if isinstance(loaded, Sequence) and all(
        isinstance(pair, tuple)
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], typer.Typer)
        for pair in loaded
    ):
        return list(loaded)
    raise TypeError(
        f"entry point {entry.value} ({COMMANDS_GROUP}) is neither a typer.Typer "
        "nor a sequence of (name, typer.Typer) pairs"
    )


def add_to_groups(
    groups: Sequence[tuple[str, typer.Typer]], added: Sequence[tuple[str, typer.Typer]]
) -> list[tuple[str, typer.Typer]]:
    """``groups`` with ``added`` after them; an added group named like an earlier one (of
    ``groups``, or added before it) gives that group its commands instead of standing beside it."""
    merged = list(groups)
    by_name = dict(groups)
    for name, group in added:
        if name in by_name:
            by_name[name].registered_commands.extend(group.registered_commands)
        else:
            merged.append((name, group))
            by_name[name] = group
    return merged


def installed_catalogue(chosen: str | None = None) -> Catalogue[Any]:
    """The event catalogue installed in ``sagakit.catalogue``, the one named ``chosen``
    (``SAGAKIT_CATALOGUE``) when given; ``CliError`` when there is none to pick."""
    entries = {entry.name: entry for entry in entry_points(group=CATALOGUE_GROUP)}
    if chosen:
        if chosen not in entries:
            raise CliError(
                f"{CHOSEN_CATALOGUE}={chosen}: no such catalogue installed "
                f"(installed: {', '.join(sorted(entries)) or 'none'})"
            )
        return _load(entries[chosen])
    if len(entries) != 1:
        raise CliError(
            f"{len(entries)} event catalogues installed ({', '.join(sorted(entries)) or 'none'}): "
            f"install one in the entry point group {CATALOGUE_GROUP}, or name it with "
            f"{CHOSEN_CATALOGUE}"
        )
    return _load(next(iter(entries.values())))


def _load(entry: EntryPoint) -> Catalogue[Any]:
    catalogue = entry.load()
    if not isinstance(catalogue, Catalogue):
        raise CliError(f"entry point {entry.value} ({CATALOGUE_GROUP}) is not a Catalogue")
    return catalogue
