from decimal import Decimal

import pytest
from pydantic import BaseModel, ValidationError

from shared.contracts.money import MoneyStr, format_money, parse_money, quantize_money, to_money

pytestmark = pytest.mark.unit


class Priced(BaseModel):
    price: MoneyStr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", Decimal("12.00")),
        ("12.5", Decimal("12.50")),
        ("12.50", Decimal("12.50")),
        ("0", Decimal("0.00")),
        ("0.01", Decimal("0.01")),
        ("999999999999999.99", Decimal("999999999999999.99")),
    ],
)
def test_parse_money_accepts_decimal_strings_with_up_to_two_places(
    text: str, expected: Decimal
) -> None:
    parsed = parse_money(text)

    assert parsed == expected
    assert parsed.as_tuple().exponent == -2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "-0.01",
        "+1",
        "1.234",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "inf",
        "Infinity",
        "12.",
        ".5",
        " 12",
        "12 ",
        "1,50",
        "abc",
        "1000000000000000",
    ],
)
def test_parse_money_refuses_anything_but_a_plain_decimal_string(text: str) -> None:
    with pytest.raises(ValueError, match="invalid money"):
        parse_money(text)


def test_parse_money_error_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match=r"at most 2 decimal places, such as \"12.50\""):
        parse_money("1.234")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.5"), "12.50"),
        (Decimal("12"), "12.00"),
        (Decimal("0"), "0.00"),
        (Decimal("1E+3"), "1000.00"),
        (Decimal("2.005"), "2.01"),
        (Decimal("-3.5"), "-3.50"),
    ],
)
def test_format_money_always_prints_two_places_without_exponent(
    value: Decimal, expected: str
) -> None:
    assert format_money(value) == expected


def test_quantize_money_rounds_half_up_to_cents() -> None:
    assert quantize_money(Decimal("2.005")) == Decimal("2.01")
    assert quantize_money(Decimal("2.004")) == Decimal("2.00")


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_quantize_money_refuses_non_finite_values(value: Decimal) -> None:
    with pytest.raises(ValueError, match="finite"):
        quantize_money(value)


def test_to_money_accepts_strings_decimals_and_ints() -> None:
    assert to_money("3.1") == Decimal("3.10")
    assert to_money(Decimal("3.1")) == Decimal("3.10")
    assert to_money(3) == Decimal("3.00")


@pytest.mark.parametrize(
    "value",
    [1.5, True, None, Decimal("-1"), Decimal("1.001"), Decimal("NaN"), -1, Decimal("1E+20")],
)
def test_to_money_refuses_floats_negatives_and_extra_places(value: object) -> None:
    with pytest.raises(ValueError, match="invalid money"):
        to_money(value)


def test_money_str_is_a_decimal_in_python_and_a_string_in_json() -> None:
    priced = Priced.model_validate({"price": "12.5"})

    assert priced.price == Decimal("12.50")
    assert priced.model_dump() == {"price": Decimal("12.50")}
    assert priced.model_dump(mode="json") == {"price": "12.50"}
    assert priced.model_dump_json() == '{"price":"12.50"}'


def test_money_str_round_trips_through_json() -> None:
    priced = Priced(price=Decimal("7"))

    assert Priced.model_validate_json(priced.model_dump_json()) == priced


@pytest.mark.parametrize("bad", ["1.234", "-5", 1.5, "NaN", None])
def test_money_str_turns_bad_input_into_a_validation_error_naming_the_field(bad: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Priced.model_validate({"price": bad})

    assert caught.value.errors()[0]["loc"] == ("price",)
    assert "invalid money" in caught.value.errors()[0]["msg"]


def test_money_str_documents_itself_as_a_string_in_the_json_schema() -> None:
    schema = Priced.model_json_schema()["properties"]["price"]

    assert schema["type"] == "string"
    assert schema["examples"] == ["12.50"]
