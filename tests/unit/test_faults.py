import random
from typing import Any

import pytest
from pydantic import ValidationError

from services.faults import ActiveFault, FaultSpec
from services.inventory.drills import OUT_OF_STOCK
from services.payment.drills import DECLINE
from services.shipping.drills import FAIL
from shared.consuming.faults import (
    INFRASTRUCTURE_KINDS,
    FaultKind,
    FaultRegistry,
    business_fault,
    inject_before_handler,
)
from shared.contracts.errors import PermanentError, TransientError

pytestmark = pytest.mark.unit

K = FaultKind
ALL_KINDS = frozenset(FaultKind) | {DECLINE, OUT_OF_STOCK, FAIL}


def registry(*specs: FaultSpec, seed: int = 1) -> FaultRegistry:
    faults = FaultRegistry(ALL_KINDS, rng=random.Random(seed))
    for spec in specs:
        faults.add(spec)
    return faults


class RecordedSleep:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


# --- the request body ------------------------------------------------------------------------


def test_a_fault_spec_defaults_to_always_forever_for_any_order() -> None:
    spec = FaultSpec.model_validate({"kind": "transient"})

    assert (spec.kind, spec.rate, spec.count, spec.keys, spec.delay_ms) == (
        K.transient,
        1.0,
        None,
        None,
        0,
    )


def test_a_fault_spec_reads_every_contract_field() -> None:
    spec = FaultSpec.model_validate(
        {"kind": "delay", "rate": 0.5, "count": 3, "order_ids": ["o-1"], "delay_ms": 250}
    )

    assert (spec.kind, spec.rate, spec.count, spec.keys, spec.delay_ms) == (
        K.delay,
        0.5,
        3,
        ["o-1"],
        250,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "explode"}, "kind"),
        ({}, "kind"),
        ({"kind": "transient", "rate": 1.5}, "rate"),
        ({"kind": "transient", "rate": -0.1}, "rate"),
        ({"kind": "transient", "rate": "nan"}, "rate"),
        ({"kind": "transient", "count": 0}, "count"),
        ({"kind": "transient", "order_ids": []}, "order_ids"),
        ({"kind": "delay", "delay_ms": -1}, "delay_ms"),
        ({"kind": "delay", "delay_ms": 600_001}, "delay_ms"),
        ({"kind": "transient", "colour": "red"}, "colour"),
    ],
)
def test_a_fault_spec_refuses_bad_fields_naming_them(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FaultSpec.model_validate(body)

    assert caught.value.errors()[0]["loc"] == (field,)


def test_a_delay_fault_needs_a_positive_delay() -> None:
    with pytest.raises(ValidationError, match="a delay fault needs delay_ms > 0"):
        FaultSpec.model_validate({"kind": "delay"})


def test_delay_ms_is_refused_on_other_kinds() -> None:
    with pytest.raises(ValidationError, match="delay_ms applies only to kind delay"):
        FaultSpec.model_validate({"kind": "transient", "delay_ms": 10})


# --- which service accepts which kinds -----------------------------------------------------------


def test_infrastructure_kinds_are_transient_permanent_crash_and_delay() -> None:
    assert {K.transient, K.permanent, K.crash, K.delay} == INFRASTRUCTURE_KINDS


def test_adding_a_kind_the_service_does_not_accept_is_refused_with_what_it_accepts() -> None:
    payment = FaultRegistry(INFRASTRUCTURE_KINDS | {DECLINE})

    with pytest.raises(ValueError, match="fault kind 'fail' does not apply to this service"):
        payment.add(FaultSpec(kind=FAIL))
    assert payment.active() == []


def test_a_registry_reports_the_kinds_it_accepts() -> None:
    kinds = INFRASTRUCTURE_KINDS | {FAIL}
    assert FaultRegistry(kinds).allowed_kinds == kinds


# --- add, active, clear ---------------------------------------------------------------------------


def test_an_added_fault_is_active_with_an_id_and_its_count_remaining() -> None:
    faults = registry()

    added = faults.add(FaultSpec(kind=K.transient, count=2))

    assert faults.active() == [added]
    assert added.id and added.remaining == 2 and added.kind is K.transient


def test_every_added_fault_gets_its_own_id() -> None:
    faults = registry()

    first, second = faults.add(FaultSpec(kind=K.crash)), faults.add(FaultSpec(kind=K.crash))

    assert first.id != second.id


def test_clear_removes_every_fault_and_says_how_many() -> None:
    faults = registry(FaultSpec(kind=K.crash), FaultSpec(kind=K.transient))

    assert faults.clear() == 2
    assert faults.active() == []
    assert faults.take(K.crash, "o-1") is None


def test_an_active_fault_serialises_to_json_for_get_faults() -> None:
    fault = registry().add(FaultSpec(kind=K.delay, delay_ms=5, count=1))

    dumped = fault.describe()

    assert dumped == {
        "kind": "delay",
        "rate": 1.0,
        "count": 1,
        "order_ids": None,
        "delay_ms": 5,
        "id": fault.id,
        "remaining": 1,
    }


# --- take -----------------------------------------------------------------------------------------


def test_take_finds_nothing_in_an_empty_registry() -> None:
    assert registry().take(K.transient, "o-1") is None


def test_take_returns_only_a_fault_of_the_asked_kind() -> None:
    faults = registry(FaultSpec(kind=K.transient))

    assert faults.take(K.permanent, "o-1") is None
    taken = faults.take(K.transient, "o-1")
    assert taken is not None and taken.kind is K.transient


def test_a_fault_without_count_fires_until_deleted() -> None:
    faults = registry(FaultSpec(kind=K.transient))

    assert all(faults.take(K.transient, "o-1") is not None for _ in range(100))
    assert len(faults.active()) == 1


def test_a_counted_fault_fires_count_times_then_leaves_the_registry() -> None:
    faults = registry(FaultSpec(kind=K.transient, count=2))

    first, second = faults.take(K.transient, "o-1"), faults.take(K.transient, "o-1")

    assert first is not None and first.remaining == 1
    assert second is not None and second.remaining == 0
    assert faults.take(K.transient, "o-1") is None
    assert faults.active() == []


def test_taking_a_counted_fault_shows_the_remaining_count_in_active() -> None:
    faults = registry(FaultSpec(kind=K.transient, count=3))

    faults.take(K.transient, "o-1")

    assert [fault.remaining for fault in faults.active()] == [2]


def test_a_fault_for_some_orders_fires_only_for_them() -> None:
    faults = registry(FaultSpec(kind=DECLINE, order_ids=["o-1", "o-2"]))

    assert faults.take(DECLINE, "o-3") is None
    assert faults.take(DECLINE, None) is None
    assert faults.take(DECLINE, "o-2") is not None


def test_the_oldest_matching_fault_fires_first() -> None:
    faults = registry()
    older = faults.add(FaultSpec(kind=FAIL, count=1))
    newer = faults.add(FaultSpec(kind=FAIL, count=1))

    first, second = faults.take(FAIL, "o-1"), faults.take(FAIL, "o-1")

    assert first is not None and first.id == older.id
    assert second is not None and second.id == newer.id


def test_a_fault_that_does_not_fire_lets_the_next_matching_one_try() -> None:
    faults = registry()
    faults.add(FaultSpec(kind=FAIL, rate=0.0))
    certain = faults.add(FaultSpec(kind=FAIL))

    taken = faults.take(FAIL, "o-1")

    assert taken is not None and taken.id == certain.id


def test_a_zero_rate_fault_never_fires_and_is_not_used_up() -> None:
    faults = registry(FaultSpec(kind=K.crash, rate=0.0, count=1))

    assert all(faults.take(K.crash, "o-1") is None for _ in range(100))
    assert len(faults.active()) == 1


def test_a_rate_fires_about_that_often() -> None:
    faults = registry(FaultSpec(kind=K.transient, rate=0.3))

    fired = sum(faults.take(K.transient, f"o-{n}") is not None for n in range(10_000))

    assert 2_800 < fired < 3_200


def test_a_seeded_random_makes_rated_faults_repeatable() -> None:
    def firings(seed: int) -> list[bool]:
        faults = registry(FaultSpec(kind=K.transient, rate=0.5), seed=seed)
        return [faults.take(K.transient, "o-1") is not None for _ in range(50)]

    assert firings(42) == firings(42)
    assert firings(42) != firings(43)


def test_a_rated_fault_only_counts_the_times_it_fires() -> None:
    faults = registry(FaultSpec(kind=K.transient, rate=0.5, count=3))

    fired = [faults.take(K.transient, "o-1") for _ in range(100)]

    assert sum(fault is not None for fault in fired) == 3
    assert faults.active() == []


def test_an_active_fault_applies_to_any_order_without_order_ids() -> None:
    fault = ActiveFault(kind=K.crash, id="f", remaining=None)

    assert fault.applies_to("anything") and fault.applies_to(None)


# --- inject_before_handler -----------------------------------------------------------------------


async def test_no_fault_lets_the_handler_run() -> None:
    sleep = RecordedSleep()

    await inject_before_handler(registry(), "o-1", sleep=sleep)

    assert sleep.seconds == []


async def test_a_delay_fault_sleeps_delay_ms_before_the_handler() -> None:
    sleep = RecordedSleep()
    faults = registry(FaultSpec(kind=K.delay, delay_ms=250))

    await inject_before_handler(faults, "o-1", sleep=sleep)

    assert sleep.seconds == [0.25]


async def test_a_delay_fault_really_sleeps_with_asyncio_by_default() -> None:
    faults = registry(FaultSpec(kind=K.delay, delay_ms=1, count=1))

    await inject_before_handler(faults, "o-1")

    assert faults.active() == []


async def test_a_transient_fault_raises_a_retryable_error() -> None:
    faults = registry(FaultSpec(kind=K.transient))

    with pytest.raises(TransientError, match="injected transient fault"):
        await inject_before_handler(faults, "o-1")


async def test_a_permanent_fault_raises_a_non_retryable_error() -> None:
    faults = registry(FaultSpec(kind=K.permanent))

    with pytest.raises(PermanentError, match="injected permanent fault"):
        await inject_before_handler(faults, "o-1")


async def test_a_counted_transient_fault_fails_that_many_attempts_then_lets_one_through() -> None:
    faults = registry(FaultSpec(kind=K.transient, count=2))

    for _ in range(2):
        with pytest.raises(TransientError):
            await inject_before_handler(faults, "o-1")
    await inject_before_handler(faults, "o-1")


async def test_a_delay_comes_before_the_error_it_is_combined_with() -> None:
    sleep = RecordedSleep()
    faults = registry(FaultSpec(kind=K.delay, delay_ms=10), FaultSpec(kind=K.transient))

    with pytest.raises(TransientError):
        await inject_before_handler(faults, "o-1", sleep=sleep)
    assert sleep.seconds == [0.01]


async def test_a_permanent_fault_wins_over_a_transient_one_without_using_it_up() -> None:
    faults = registry(FaultSpec(kind=K.transient, count=1), FaultSpec(kind=K.permanent, count=1))

    with pytest.raises(PermanentError):
        await inject_before_handler(faults, "o-1")
    assert [fault.kind for fault in faults.active()] == [K.transient]


async def test_faults_for_other_orders_do_not_touch_this_handler() -> None:
    faults = registry(FaultSpec(kind=K.permanent, order_ids=["o-2"]))

    await inject_before_handler(faults, "o-1")


@pytest.mark.parametrize("kind", [K.crash, DECLINE, OUT_OF_STOCK, FAIL])
async def test_crash_and_business_faults_are_left_to_their_own_place(kind: FaultKind) -> None:
    faults = registry(FaultSpec(kind=kind))

    await inject_before_handler(faults, "o-1")

    assert faults.take(kind, "o-1") is not None


# --- business faults: a rule with a fault in front of it ------------------------------------------


class Order:
    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self.entity_key = order_id  # what a business fault looks up (shared.consuming.faults.Keyed)


def rule(order: Order, amount: int) -> str:
    return f"rule {order.order_id} {amount}"


def outcome(order: Order, amount: int) -> str:
    return f"fault {order.order_id} {amount}"


def test_a_business_fault_answers_for_the_orders_it_fires_for_and_the_rule_for_the_others() -> None:
    faults = registry(FaultSpec(kind=DECLINE, order_ids=["o-1"], count=1))
    decide = business_fault(DECLINE, faults, rule, outcome)

    assert decide(Order("o-2"), 5) == "rule o-2 5"
    assert decide(Order("o-1"), 5) == "fault o-1 5"
    assert decide(Order("o-1"), 5) == "rule o-1 5"  # count 1: used up
    assert faults.active() == []


def test_without_a_registry_the_rule_is_not_wrapped_at_all() -> None:
    assert business_fault(DECLINE, None, rule, outcome) is rule


def test_a_business_fault_of_a_kind_the_service_does_not_accept_is_refused() -> None:
    faults = FaultRegistry(INFRASTRUCTURE_KINDS)
    with pytest.raises(ValueError, match="does not accept decline faults"):
        business_fault(DECLINE, faults, rule, outcome)
