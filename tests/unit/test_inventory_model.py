import random
from collections.abc import Callable, Mapping, Sequence

import pytest

from services.inventory.model import (
    ALLOWED_TRANSITIONS,
    FailureReason,
    Line,
    ReservationResult,
    ReservationStatus,
    StockLevel,
    can_transition,
    quantities_by_sku,
    release,
    reserve,
    restock,
    ship,
)

pytestmark = pytest.mark.unit

R = ReservationStatus
Move = Callable[[Mapping[str, StockLevel], Sequence[Line]], dict[str, StockLevel]]


def totals(levels: Mapping[str, StockLevel]) -> dict[str, int]:
    return {sku: level.total for sku, level in levels.items()}


# --- reserve -------------------------------------------------------------------------------------


def test_a_reservation_moves_every_line_from_available_to_reserved() -> None:
    levels = {"BOOK": StockLevel(available=5), "PEN": StockLevel(available=10, reserved=1)}

    result = reserve(levels, [("BOOK", 2), ("PEN", 3)])

    assert result.reserved
    assert result.levels == {
        "BOOK": StockLevel(available=3, reserved=2),
        "PEN": StockLevel(available=7, reserved=4),
    }
    assert totals(result.levels) == totals(levels)


def test_a_reservation_of_exactly_what_is_available_succeeds() -> None:
    result = reserve({"BOOK": StockLevel(available=2)}, [("BOOK", 2)])

    assert result.levels == {"BOOK": StockLevel(available=0, reserved=2)}


def test_a_line_exceeding_available_fails_the_whole_reservation_as_out_of_stock() -> None:
    levels = {"BOOK": StockLevel(available=5), "PEN": StockLevel(available=1)}

    result = reserve(levels, [("BOOK", 2), ("PEN", 3)])

    assert result == ReservationResult(
        R.FAILED, reason=FailureReason.out_of_stock, failed_skus=("PEN",)
    )
    assert result.levels == {}


def test_the_same_sku_on_two_lines_is_summed_before_checking() -> None:
    levels = {"BOOK": StockLevel(available=3)}

    failed = reserve(levels, [("BOOK", 2), ("BOOK", 2)])
    reserved = reserve(levels, [("BOOK", 1), ("BOOK", 2)])

    assert failed.reason is FailureReason.out_of_stock
    assert reserved.levels == {"BOOK": StockLevel(available=0, reserved=3)}


@pytest.mark.parametrize(
    "levels", [{"BOOK": StockLevel(available=5)}, {"BOOK": StockLevel(available=5), "X": None}]
)
def test_an_unknown_sku_fails_with_unknown_sku(levels: Mapping[str, StockLevel | None]) -> None:
    result = reserve(levels, [("BOOK", 1), ("X", 1)])

    assert (result.status, result.reason, result.failed_skus) == (
        R.FAILED,
        FailureReason.unknown_sku,
        ("X",),
    )


def test_an_unknown_sku_is_reported_before_a_line_that_is_out_of_stock() -> None:
    levels = {"BOOK": StockLevel(available=0)}

    result = reserve(levels, [("BOOK", 1), ("X", 1)])

    assert result.reason is FailureReason.unknown_sku


@pytest.mark.parametrize("quantity", [0, -2])
def test_a_line_with_a_quantity_below_one_is_refused(quantity: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        reserve({"BOOK": StockLevel(available=5)}, [("BOOK", quantity)])


def test_quantities_are_summed_per_sku_in_line_order() -> None:
    assert quantities_by_sku([("B", 1), ("A", 2), ("B", 3)]) == {"B": 4, "A": 2}


# --- release and ship -----------------------------------------------------------------------------


def test_release_gives_reserved_units_back_to_available() -> None:
    levels = {"BOOK": StockLevel(available=3, reserved=2)}

    assert release(levels, [("BOOK", 2)]) == {"BOOK": StockLevel(available=5, reserved=0)}


def test_ship_moves_reserved_units_to_shipped() -> None:
    levels = {"BOOK": StockLevel(available=3, reserved=2, shipped=1)}

    assert ship(levels, [("BOOK", 2)]) == {"BOOK": StockLevel(available=3, reserved=0, shipped=3)}


def test_reserve_then_release_restores_the_levels() -> None:
    levels = {"BOOK": StockLevel(available=5), "PEN": StockLevel(available=2)}
    lines: list[Line] = [("BOOK", 2), ("PEN", 1), ("BOOK", 1)]

    reserved = reserve(levels, lines).levels

    assert release(reserved, lines) == levels


@pytest.mark.parametrize("move", [release, ship])
def test_release_and_ship_refuse_to_take_more_than_is_reserved(move: Move) -> None:
    with pytest.raises(ValueError, match="already released or shipped"):
        move({"BOOK": StockLevel(available=5, reserved=1)}, [("BOOK", 2)])


def test_release_refuses_an_unknown_sku() -> None:
    with pytest.raises(ValueError, match="no stock level for sku 'X'"):
        release({}, [("X", 1)])


# --- the stock invariant --------------------------------------------------------------------------


def test_available_plus_reserved_plus_shipped_never_changes_over_many_orders() -> None:
    rng = random.Random(7)
    skus = ["A", "B", "C"]
    levels = {sku: StockLevel(available=rng.randint(50, 150)) for sku in skus}
    put_in = totals(levels)
    held: list[list[Line]] = []

    for _ in range(500):
        if held and rng.random() < 0.5:
            lines = held.pop(rng.randrange(len(held)))
            levels |= (ship if rng.random() < 0.2 else release)(levels, lines)
        else:
            lines = [(rng.choice(skus), rng.randint(1, 4)) for _ in range(rng.randint(1, 3))]
            result = reserve(levels, lines)
            if result.reserved:
                levels |= result.levels
                held.append(lines)
        assert totals(levels) == put_in

    for lines in held:
        levels |= release(levels, lines)
    assert all(level.reserved == 0 for level in levels.values())
    assert totals(levels) == put_in


# --- stock levels and restocking ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{"available": -1}, {"available": 1, "reserved": -1}, {"available": 1, "shipped": -1}],
)
def test_a_stock_level_refuses_negative_counts(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be a whole number >= 0"):
        StockLevel(**fields)


def test_restock_creates_a_new_sku_with_only_available_units() -> None:
    assert restock(None, 10) == StockLevel(available=10, reserved=0, shipped=0)


def test_restock_sets_available_and_keeps_reserved_and_shipped() -> None:
    level = StockLevel(available=1, reserved=2, shipped=3)

    assert restock(level, 10) == StockLevel(available=10, reserved=2, shipped=3)


def test_restock_refuses_a_negative_amount() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        restock(None, -1)


# --- reservation transitions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target"),
    [(None, R.RESERVED), (None, R.FAILED), (R.RESERVED, R.RELEASED), (R.RESERVED, R.SHIPPED)],
)
def test_a_reservation_may_take_each_step_of_its_life(
    current: ReservationStatus | None, target: ReservationStatus
) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize("target", list(ReservationStatus))
@pytest.mark.parametrize("current", [R.FAILED, R.RELEASED, R.SHIPPED])
def test_a_failed_released_or_shipped_reservation_goes_nowhere(
    current: ReservationStatus, target: ReservationStatus
) -> None:
    assert not can_transition(current, target)


@pytest.mark.parametrize("target", list(ReservationStatus))
def test_an_order_is_never_reserved_twice(target: ReservationStatus) -> None:
    assert not can_transition(R.RESERVED, R.RESERVED)
    assert can_transition(None, target) == (target in {R.RESERVED, R.FAILED})


@pytest.mark.parametrize("target", [R.RELEASED, R.SHIPPED])
def test_release_or_ship_without_a_reservation_does_nothing(target: ReservationStatus) -> None:
    assert not can_transition(None, target)


def test_every_status_has_its_transitions_listed() -> None:
    assert set(ALLOWED_TRANSITIONS) == {None, *ReservationStatus}
