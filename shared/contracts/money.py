"""Money as ``Decimal``: one way to parse, validate, round and print amounts in every service.

Amounts travel as decimal strings with at most two places (``"12.50"``), never as floats, so
no cent is ever lost to binary rounding. Inside a service they are ``Decimal`` values held at
exactly two places. ``MoneyStr`` is the pydantic v2 field type that applies these rules: it
accepts ``"12.5"`` or ``Decimal("12.5")`` and gives ``Decimal("12.50")`` in Python and
``"12.50"`` in JSON.
"""

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Final

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

__all__ = [
    "CENT",
    "MAX_INTEGER_DIGITS",
    "ZERO",
    "MoneyStr",
    "format_money",
    "parse_money",
    "quantize_money",
    "to_money",
]

CENT: Final = Decimal("0.01")
ZERO: Final = Decimal("0.00")

MAX_INTEGER_DIGITS: Final = 15
"""Digits allowed before the decimal point: amounts stay below 10**15, which any
``NUMERIC(18, 2)`` column holds and ``Decimal``'s default 28-digit context computes exactly."""

_MONEY_TEXT = re.compile(rf"[0-9]{{1,{MAX_INTEGER_DIGITS}}}(\.[0-9]{{1,2}})?")
_EXPECTED = 'a decimal string >= 0 with at most 2 decimal places, such as "12.50"'


def quantize_money(value: Decimal) -> Decimal:
    """Round ``value`` to whole cents (half up), e.g. ``Decimal("2.005")`` -> ``Decimal("2.01")``.

    Raises ``ValueError`` for NaN and infinities, which are never amounts.
    """
    if not value.is_finite():
        raise ValueError(f"money must be a finite number, got {value}")
    try:
        return value.quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as error:  # more digits than the decimal context can hold
        raise ValueError(f"money amount {value} is too large") from error


def parse_money(text: str) -> Decimal:
    """Parse a money string (``"12"``, ``"12.5"``, ``"12.50"``) into a two-place ``Decimal``.

    Refuses, with a ``ValueError`` that says what is expected: negative amounts, more than two
    decimal places, exponents, ``NaN`` and infinities, signs, spaces, and more than
    ``MAX_INTEGER_DIGITS`` digits before the point.
    """
    if not _MONEY_TEXT.fullmatch(text):
        raise ValueError(f"invalid money {text!r}: expected {_EXPECTED}")
    return Decimal(text).quantize(CENT)


def to_money(value: object) -> Decimal:
    """Validate ``value`` as an amount of money and return it as a two-place ``Decimal``.

    Accepts a money string (see ``parse_money``), a ``Decimal`` or an ``int`` that obeys the
    same rules. Floats are refused: they cannot hold most cent amounts exactly.
    """
    if isinstance(value, str):
        return parse_money(value)
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError(f"invalid money {value!r}: expected {_EXPECTED}")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"invalid money {value}: expected {_EXPECTED}")
    rounded = quantize_money(amount)
    if rounded != amount:
        raise ValueError(f"invalid money {value}: more than 2 decimal places")
    if rounded >= Decimal(10) ** MAX_INTEGER_DIGITS:
        raise ValueError(
            f"invalid money {value}: at most {MAX_INTEGER_DIGITS} digits before the point"
        )
    return rounded


def format_money(value: Decimal) -> str:
    """Print an amount with exactly two places and no exponent: ``Decimal("12.5")`` -> ``"12.50"``.

    Values with more places are rounded half up (see ``quantize_money``).
    """
    return f"{quantize_money(value):f}"


MoneyStr = Annotated[
    Decimal,
    PlainValidator(to_money),
    PlainSerializer(format_money, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "pattern": f"^{_MONEY_TEXT.pattern}$", "examples": ["12.50"]},
    ),
]
"""Pydantic v2 field type for money: validated by ``to_money``, a ``Decimal`` in Python,
a ``"12.50"`` string in JSON (``model_dump(mode="json")`` and ``model_dump_json()``)."""
