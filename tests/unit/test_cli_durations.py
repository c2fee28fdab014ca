"""``--by-duration``: ISO 8601 durations and the short form, nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer

from shared.ops.cli.durations import parse_duration

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1H", timedelta(hours=1)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("P2D", timedelta(days=2)),
        ("pt15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("45s", timedelta(seconds=45)),
        ("0s", timedelta(0)),
    ],
)
def test_a_duration_is_read_in_either_form(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1 hour", "1h 30m", "P1M", "h", "-1h"])
def test_anything_else_is_a_usage_error(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="is not a duration"):
        parse_duration(text)
