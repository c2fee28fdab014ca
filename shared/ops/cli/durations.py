"""A duration on the command line: ISO 8601 (``P1DT2H``, kafka-consumer-groups.sh's
``--by-duration``) or the short form operators type (``1h30m``, ``2d``, ``45s``).

Months and years are refused: their length depends on the calendar, and a reset of offsets
should go back exactly as far as it says.
"""

from __future__ import annotations

import re
from datetime import timedelta

import typer

__all__ = ["parse_duration"]

_ISO = re.compile(
    r"P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_SHORT = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)", re.IGNORECASE)
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str, option: str = "--by-duration") -> timedelta:
    """``text`` as a timedelta; a usage error (exit 2) naming ``option`` otherwise."""
    spoken = text.strip()
    iso = _ISO.fullmatch(spoken)
    if iso and spoken.upper() not in ("P", "PT") and not spoken.upper().endswith("T"):
        return timedelta(**{unit: float(n) for unit, n in iso.groupdict().items() if n})
    parts = _SHORT.findall(spoken)
    if parts and "".join(n + unit for n, unit in parts) == spoken:
        amounts: dict[str, float] = {}
        for number, unit in parts:
            name = _UNITS[unit.lower()]
            amounts[name] = amounts.get(name, 0.0) + float(number)
        return timedelta(**amounts)
    raise typer.BadParameter(
        f"{text!r} is not a duration (e.g. PT1H, P1DT12H, 1h30m, 2d, 45s)", param_hint=option
    )
