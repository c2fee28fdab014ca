"""What a system adds to ``sagakit``: its catalogue and its commands, found by entry point."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import typer

from services import cli as reference_cli
from services.analytics.cli import app as analytics
from services.events import CATALOGUE
from services.order.cli.dlq import app as order_dlq
from services.order.cli.orders import app as orders
from shared.ops.cli import plugins
from shared.ops.cli.app import GROUPS, app
from shared.ops.cli.output import CliError
from shared.ops.cli.plugins import (
    CATALOGUE_GROUP,
    COMMANDS_GROUP,
    add_to_groups,
    installed_catalogue,
    installed_commands,
)

pytestmark = pytest.mark.unit

ONE_GROUP = typer.Typer()
PAIRS = [("first", typer.Typer()), ("second", typer.Typer())]
NOT_COMMANDS = {"first": typer.Typer()}


def test_the_reference_system_installs_the_commands_its_services_declare() -> None:
    installed = installed_commands()
    assert ("orders", orders) in installed
    assert ("analytics", analytics) in installed  # services/analytics/cli.py, no entry point
    assert ("dlq", order_dlq) in installed
    assert installed == reference_cli.COMMANDS
    assert {"orders", "analytics"} <= {group.name for group in app.registered_groups}


def test_the_installed_catalogue_is_the_reference_one() -> None:
    assert installed_catalogue() is CATALOGUE
    assert installed_catalogue("reference") is CATALOGUE


def test_a_catalogue_that_is_not_installed_is_refused_naming_those_that_are() -> None:
    with pytest.raises(CliError, match=r"no such catalogue installed \(installed: reference\)"):
        installed_catalogue("bookings")


def installed(monkeypatch: pytest.MonkeyPatch, *entries: tuple[str, str, str]) -> None:
    """Only these entry points (name, value, group) installed, as plugins reads them."""
    found = [EntryPoint(name, value, group) for name, value, group in entries]
    monkeypatch.setattr(
        plugins, "entry_points", lambda group: [e for e in found if e.group == group]
    )


def test_without_a_system_installed_sagakit_has_its_own_commands_and_no_catalogue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed(monkeypatch)
    assert installed_commands() == []
    assert add_to_groups(GROUPS, installed_commands()) == GROUPS
    with pytest.raises(CliError, match=r"0 event catalogues installed \(none\)"):
        installed_catalogue()


def test_an_entry_is_one_group_named_after_it_or_pairs_named_by_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here = __name__
    installed(
        monkeypatch,
        ("bookings", f"{here}:ONE_GROUP", COMMANDS_GROUP),
        ("system", f"{here}:PAIRS", COMMANDS_GROUP),
        ("ignored", f"{here}:ONE_GROUP", CATALOGUE_GROUP),
    )
    assert installed_commands() == [("bookings", ONE_GROUP), *PAIRS]


def test_an_entry_of_anything_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, ("system", f"{__name__}:NOT_COMMANDS", COMMANDS_GROUP))
    with pytest.raises(TypeError, match=r"neither a typer\.Typer nor a sequence of"):
        installed_commands()


def test_a_group_named_like_an_earlier_one_adds_its_commands_to_it() -> None:
    platform, first, second = typer.Typer(), typer.Typer(), typer.Typer()
    for group, command in ((platform, "a"), (first, "b"), (second, "c")):
        group.command(name=command)(lambda: None)
    extra_platform, extra_first = typer.Typer(), typer.Typer()
    extra_platform.command(name="d")(lambda: None)
    extra_first.command(name="e")(lambda: None)

    merged = add_to_groups(
        [("dlq", platform)],
        [("bookings", first), ("dlq", extra_platform), ("bookings", extra_first), ("x", second)],
    )
    assert merged == [("dlq", platform), ("bookings", first), ("x", second)]
    assert [c.name for c in platform.registered_commands] == ["a", "d"]
    assert [c.name for c in first.registered_commands] == ["b", "e"]
