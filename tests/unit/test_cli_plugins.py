"""What a system adds to ``sagakit``: its catalogue and its commands, found by entry point."""

from __future__ import annotations

import pytest

from services.events import CATALOGUE
from services.order.cli.orders import app as orders
from shared.ops.cli.app import app
from shared.ops.cli.output import CliError
from shared.ops.cli.plugins import installed_catalogue, installed_commands

pytestmark = pytest.mark.unit


def test_the_reference_system_installs_its_orders_commands() -> None:
    assert ("orders", orders) in installed_commands()
    assert "orders" in {group.name for group in app.registered_groups}


def test_the_installed_catalogue_is_the_reference_one() -> None:
    assert installed_catalogue() is CATALOGUE
    assert installed_catalogue("reference") is CATALOGUE


def test_a_catalogue_that_is_not_installed_is_refused_naming_those_that_are() -> None:
    with pytest.raises(CliError, match=r"no such catalogue installed \(installed: reference\)"):
        installed_catalogue("bookings")
