from decimal import Decimal
from itertools import chain, combinations, permutations

import pytest

from services.order.model import (
    CancelReason,
    OrderLine,
    OrderStatus,
    Saga,
    SagaFact,
    Transition,
    derive,
    fact_for,
    order_total,
)

pytestmark = pytest.mark.unit

F = SagaFact

# Each saga flow of docs/events.md: the facts the order service sees, and where it ends.
FLOWS: dict[str, tuple[tuple[SagaFact, ...], OrderStatus, CancelReason | None]] = {
    "completed": (
        (F.PaymentProcessed, F.InventoryReserved, F.OrderShipped),
        OrderStatus.COMPLETED,
        None,
    ),
    "payment declined": ((F.PaymentFailed,), OrderStatus.CANCELLED, CancelReason.payment_declined),
    "out of stock": (
        (F.PaymentProcessed, F.InventoryFailed, F.PaymentRefunded),
        OrderStatus.CANCELLED,
        CancelReason.out_of_stock,
    ),
    "shipping failed": (
        (
            F.PaymentProcessed,
            F.InventoryReserved,
            F.ShippingFailed,
            F.InventoryReleased,
            F.PaymentRefunded,
        ),
        OrderStatus.CANCELLED,
        CancelReason.shipping_failed,
    ),
}

# The facts that end each flow: CANCELLED needs every compensation confirmed.
DECIDING_FACTS: dict[OrderStatus | CancelReason, frozenset[SagaFact]] = {
    OrderStatus.COMPLETED: frozenset({F.OrderShipped}),
    CancelReason.payment_declined: frozenset({F.PaymentFailed}),
    CancelReason.out_of_stock: frozenset({F.InventoryFailed, F.PaymentRefunded}),
    CancelReason.shipping_failed: frozenset(
        {F.ShippingFailed, F.PaymentRefunded, F.InventoryReleased}
    ),
}

FLOW_PERMUTATIONS = [
    pytest.param(order, status, reason, id=f"{name}: {' '.join(order)}")
    for name, (facts, status, reason) in FLOWS.items()
    for order in permutations(facts)
]


def record_all(saga: Saga, facts: tuple[SagaFact, ...]) -> list[Transition]:
    return [saga.record(fact) for fact in facts]


def all_subsets(facts: list[SagaFact]) -> list[frozenset[SagaFact]]:
    sizes = range(len(facts) + 1)
    return [frozenset(c) for c in chain.from_iterable(combinations(facts, n) for n in sizes)]


# --- the contract flows, in their nominal order ---------------------------------------------


@pytest.mark.parametrize("name", FLOWS)
def test_each_contract_flow_in_its_nominal_order_ends_where_the_contract_says(name: str) -> None:
    facts, status, reason = FLOWS[name]
    saga = Saga()

    record_all(saga, facts)

    assert (saga.status, saga.cancel_reason) == (status, reason)


def test_the_completed_flow_walks_pending_paid_reserved_completed() -> None:
    saga = Saga()

    statuses = [t.status for t in record_all(saga, FLOWS["completed"][0])]

    assert statuses == [OrderStatus.PAID, OrderStatus.RESERVED, OrderStatus.COMPLETED]


def test_a_new_saga_is_pending_with_no_facts() -> None:
    saga = Saga()

    assert (saga.status, saga.cancel_reason, saga.facts) == (OrderStatus.PENDING, None, frozenset())
    assert not saga.is_terminal


# --- any arrival order -------------------------------------------------------------------------


@pytest.mark.parametrize(("order", "status", "reason"), FLOW_PERMUTATIONS)
def test_every_arrival_order_of_a_flow_reaches_the_same_end_and_becomes_terminal_once(
    order: tuple[SagaFact, ...], status: OrderStatus, reason: CancelReason | None
) -> None:
    saga = Saga()

    transitions = record_all(saga, order)

    assert (saga.status, saga.cancel_reason) == (status, reason)
    assert [t.became_terminal for t in transitions].count(True) == 1


@pytest.mark.parametrize(("order", "status", "reason"), FLOW_PERMUTATIONS)
def test_every_arrival_order_ends_exactly_when_the_last_deciding_fact_arrives(
    order: tuple[SagaFact, ...], status: OrderStatus, reason: CancelReason | None
) -> None:
    deciding = DECIDING_FACTS[reason or status]
    last_deciding = max(order.index(fact) for fact in deciding)

    transitions = record_all(Saga(), order)

    assert [t.status.is_terminal for t in transitions] == [
        index >= last_deciding for index in range(len(order))
    ]
    assert transitions[last_deciding].became_terminal


@pytest.mark.parametrize(("order", "status", "reason"), FLOW_PERMUTATIONS)
def test_every_arrival_order_only_moves_the_status_forward(
    order: tuple[SagaFact, ...], status: OrderStatus, reason: CancelReason | None
) -> None:
    saga = Saga()

    ranks = [t.status.rank for t in record_all(saga, order)]

    assert ranks == sorted(ranks)


@pytest.mark.parametrize(("order", "status", "reason"), FLOW_PERMUTATIONS)
def test_redelivering_every_fact_of_any_arrival_order_changes_nothing(
    order: tuple[SagaFact, ...], status: OrderStatus, reason: CancelReason | None
) -> None:
    saga = Saga()
    # each fact delivered twice in a row, then the whole stream replayed once more
    stream = tuple(chain.from_iterable((fact, fact) for fact in order)) + order

    transitions = record_all(saga, stream)

    assert (saga.status, saga.cancel_reason) == (status, reason)
    assert [t.became_terminal for t in transitions].count(True) == 1
    assert all(t.duplicate and not t.changed for t in transitions[1::2][: len(order)])
    assert all(t.duplicate for t in transitions[-len(order) :])


# --- failures wait for their compensations ---------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "status"),
    [
        ({F.InventoryFailed}, OrderStatus.PAID),
        ({F.PaymentProcessed, F.InventoryFailed}, OrderStatus.PAID),
        ({F.PaymentRefunded}, OrderStatus.PAID),
        ({F.ShippingFailed}, OrderStatus.RESERVED),
        ({F.ShippingFailed, F.PaymentRefunded}, OrderStatus.RESERVED),
        ({F.ShippingFailed, F.InventoryReleased}, OrderStatus.RESERVED),
        ({F.PaymentProcessed, F.InventoryReserved, F.ShippingFailed}, OrderStatus.RESERVED),
        ({F.InventoryReleased, F.PaymentRefunded}, OrderStatus.RESERVED),
    ],
)
def test_a_failure_whose_compensation_is_unconfirmed_keeps_a_non_terminal_status(
    facts: set[SagaFact], status: OrderStatus
) -> None:
    assert derive(frozenset(facts)) == (status, None)


def test_out_of_stock_is_cancelled_only_once_the_refund_is_confirmed() -> None:
    saga = Saga.replay([F.PaymentProcessed, F.InventoryFailed])
    assert saga.status is OrderStatus.PAID

    transition = saga.record(F.PaymentRefunded)

    assert transition.became_terminal
    assert (saga.status, saga.cancel_reason) == (OrderStatus.CANCELLED, CancelReason.out_of_stock)


def test_shipping_failed_is_cancelled_only_once_refund_and_release_are_both_confirmed() -> None:
    saga = Saga.replay(
        [F.PaymentProcessed, F.InventoryReserved, F.ShippingFailed, F.PaymentRefunded]
    )
    assert saga.status is OrderStatus.RESERVED

    transition = saga.record(F.InventoryReleased)

    assert transition.became_terminal
    assert saga.cancel_reason is CancelReason.shipping_failed


def test_a_payment_decline_cancels_at_once_because_nothing_needs_undoing() -> None:
    transition = Saga().record(F.PaymentFailed)

    assert transition.became_terminal
    assert transition.cancel_reason is CancelReason.payment_declined


# --- derive ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (set(), (OrderStatus.PENDING, None)),
        ({F.PaymentProcessed}, (OrderStatus.PAID, None)),
        ({F.InventoryReserved}, (OrderStatus.RESERVED, None)),
        ({F.OrderShipped}, (OrderStatus.COMPLETED, None)),
        ({F.PaymentFailed}, (OrderStatus.CANCELLED, CancelReason.payment_declined)),
        (
            {F.InventoryFailed, F.PaymentRefunded},
            (OrderStatus.CANCELLED, CancelReason.out_of_stock),
        ),
        (
            {F.ShippingFailed, F.PaymentRefunded, F.InventoryReleased},
            (OrderStatus.CANCELLED, CancelReason.shipping_failed),
        ),
    ],
)
def test_derive_maps_a_set_of_facts_to_a_status(
    facts: set[SagaFact], expected: tuple[OrderStatus, CancelReason | None]
) -> None:
    assert derive(frozenset(facts)) == expected


def test_derive_never_lowers_the_rank_when_a_fact_is_added() -> None:
    for facts in all_subsets(list(SagaFact)):
        rank = derive(facts)[0].rank
        for extra in SagaFact:
            assert derive(facts | {extra})[0].rank >= rank, (sorted(facts), extra)


def test_derive_gives_a_cancel_reason_exactly_for_cancelled() -> None:
    for facts in all_subsets(list(SagaFact)):
        status, reason = derive(facts)
        assert (status is OrderStatus.CANCELLED) == (reason is not None), sorted(facts)


def test_derive_lets_the_earliest_step_decide_an_inconsistent_set() -> None:
    everything = frozenset(SagaFact)

    assert derive(everything) == (OrderStatus.CANCELLED, CancelReason.payment_declined)
    assert derive(everything - {F.PaymentFailed}) == (
        OrderStatus.CANCELLED,
        CancelReason.out_of_stock,
    )
    shipped_and_failed = {F.OrderShipped, F.ShippingFailed, F.PaymentRefunded, F.InventoryReleased}
    assert derive(frozenset(shipped_and_failed)) == (OrderStatus.COMPLETED, None)


# --- absorption, forward only, duplicates -----------------------------------------------------


@pytest.mark.parametrize("late", list(SagaFact))
def test_a_completed_order_absorbs_any_late_fact(late: SagaFact) -> None:
    saga = Saga.replay(FLOWS["completed"][0])

    transition = saga.record(late)

    assert (saga.status, saga.cancel_reason) == (OrderStatus.COMPLETED, None)
    assert not transition.changed and not transition.became_terminal
    assert late in saga.facts


@pytest.mark.parametrize("late", list(SagaFact))
def test_a_cancelled_order_absorbs_any_late_fact(late: SagaFact) -> None:
    saga = Saga.replay(FLOWS["payment declined"][0])

    transition = saga.record(late)

    assert (saga.status, saga.cancel_reason) == (
        OrderStatus.CANCELLED,
        CancelReason.payment_declined,
    )
    assert not transition.changed and not transition.became_terminal
    assert late in saga.facts


def test_a_new_fact_after_the_end_is_reported_as_absorbed() -> None:
    saga = Saga.replay([F.PaymentFailed])

    transition = saga.record(F.PaymentProcessed)

    assert transition.absorbed and not transition.duplicate


def test_the_status_never_moves_backward_to_a_lower_rank() -> None:
    saga = Saga(status=OrderStatus.RESERVED, facts=frozenset({F.InventoryReserved}))

    transition = saga.record(F.PaymentProcessed)

    assert saga.status is OrderStatus.RESERVED
    assert not transition.changed


def test_a_stored_status_higher_than_the_facts_prove_is_kept() -> None:
    saga = Saga(status=OrderStatus.RESERVED)

    saga.record(F.PaymentProcessed)

    assert saga.status is OrderStatus.RESERVED


def test_a_repeated_fact_is_a_duplicate_that_changes_nothing() -> None:
    saga = Saga.replay([F.PaymentProcessed])

    transition = saga.record(F.PaymentProcessed)

    assert transition.duplicate
    assert not transition.changed and not transition.became_terminal
    assert saga.facts == frozenset({F.PaymentProcessed})


def test_a_repeated_terminal_fact_does_not_become_terminal_twice() -> None:
    saga = Saga()

    first, second = saga.record(F.OrderShipped), saga.record(F.OrderShipped)

    assert first.became_terminal
    assert not second.became_terminal and second.duplicate and not second.absorbed


def test_a_saga_refuses_a_cancel_reason_without_cancelled_and_the_reverse() -> None:
    with pytest.raises(ValueError, match="cancel reason exactly when it is CANCELLED"):
        Saga(status=OrderStatus.CANCELLED)
    with pytest.raises(ValueError, match="cancel reason exactly when it is CANCELLED"):
        Saga(status=OrderStatus.PAID, cancel_reason=CancelReason.out_of_stock)


# --- event types and statuses -------------------------------------------------------------------


@pytest.mark.parametrize("fact", list(SagaFact))
def test_an_event_type_maps_straight_to_its_fact(fact: SagaFact) -> None:
    assert fact_for(fact.value) is fact


@pytest.mark.parametrize("event_type", ["OrderCreated", "OrderCompleted", "OrderCancelled", ""])
def test_events_that_do_not_move_the_saga_have_no_fact(event_type: str) -> None:
    assert fact_for(event_type) is None


def test_status_ranks_order_the_saga_and_both_ends_are_terminal() -> None:
    assert [s.rank for s in OrderStatus] == [0, 1, 2, 3, 3]
    assert {s for s in OrderStatus if s.is_terminal} == {
        OrderStatus.COMPLETED,
        OrderStatus.CANCELLED,
    }


# --- order lines and totals ----------------------------------------------------------------------


def test_an_order_total_sums_quantity_times_unit_price_over_the_lines() -> None:
    lines = [
        OrderLine(sku="BOOK", quantity=2, unit_price=Decimal("12.50")),
        OrderLine(sku="PEN", quantity=3, unit_price=Decimal("0.99")),
    ]

    assert order_total(lines) == Decimal("27.97")


def test_an_order_total_has_two_places_even_for_whole_amounts() -> None:
    total = order_total([OrderLine(sku="BOOK", quantity=1, unit_price=Decimal("10"))])

    assert str(total) == "10.00"


def test_an_empty_order_totals_zero() -> None:
    assert order_total([]) == Decimal("0.00")


def test_an_order_line_normalises_its_unit_price_to_two_places() -> None:
    assert OrderLine(sku="A", quantity=1, unit_price=Decimal("3.5")).unit_price.as_tuple() == (
        Decimal("3.50").as_tuple()
    )


@pytest.mark.parametrize("quantity", [0, -1])
def test_an_order_line_needs_a_quantity_of_at_least_one(quantity: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        OrderLine(sku="A", quantity=quantity, unit_price=Decimal("1.00"))


@pytest.mark.parametrize("price", [Decimal("-1.00"), Decimal("1.001"), Decimal("NaN")])
def test_an_order_line_refuses_a_unit_price_that_is_not_money(price: Decimal) -> None:
    with pytest.raises(ValueError, match="invalid money"):
        OrderLine(sku="A", quantity=1, unit_price=price)


def test_an_order_line_needs_a_sku() -> None:
    with pytest.raises(ValueError, match="needs a sku"):
        OrderLine(sku="", quantity=1, unit_price=Decimal("1.00"))


# --- timing out --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "facts",
    [(), (F.PaymentProcessed,), (F.PaymentProcessed, F.InventoryReserved)],
    ids=["pending", "paid", "reserved"],
)
def test_a_waiting_saga_times_out_to_cancelled_and_keeps_its_facts(
    facts: tuple[SagaFact, ...],
) -> None:
    saga = Saga.replay(facts)

    assert saga.time_out()

    assert (saga.status, saga.cancel_reason) == (OrderStatus.CANCELLED, CancelReason.timed_out)
    assert saga.facts == frozenset(facts)


@pytest.mark.parametrize("flow", list(FLOWS))
def test_an_ended_saga_does_not_time_out(flow: str) -> None:
    facts, status, reason = FLOWS[flow]
    saga = Saga.replay(facts)

    assert not saga.time_out()

    assert (saga.status, saga.cancel_reason) == (status, reason)


@pytest.mark.parametrize("late", [fact for fact in SagaFact if fact is not F.OrderShipped])
def test_a_timed_out_saga_absorbs_every_later_fact_but_order_shipped(late: SagaFact) -> None:
    saga = Saga.replay([F.PaymentProcessed])
    saga.time_out()

    transition = saga.record(late)

    assert (saga.status, saga.cancel_reason) == (OrderStatus.CANCELLED, CancelReason.timed_out)
    assert not transition.became_terminal
    assert transition.absorbed or transition.duplicate
    assert not saga.time_out()


@pytest.mark.parametrize(
    "facts",
    [(), (F.PaymentProcessed,), (F.PaymentProcessed, F.InventoryReserved)],
    ids=["pending", "paid", "reserved"],
)
def test_a_timed_out_saga_whose_parcel_shipped_anyway_completes_once(
    facts: tuple[SagaFact, ...],
) -> None:
    saga = Saga.replay(facts)
    saga.time_out()

    transition = saga.record(F.OrderShipped)

    assert (saga.status, saga.cancel_reason) == (OrderStatus.COMPLETED, None)
    assert transition.became_terminal and transition.changed and not transition.absorbed
    for later in SagaFact:
        assert not saga.record(later).became_terminal
    assert saga.status is OrderStatus.COMPLETED


def test_order_shipped_after_any_other_cancel_is_absorbed() -> None:
    saga = Saga.replay([F.PaymentProcessed, F.InventoryFailed, F.PaymentRefunded])

    transition = saga.record(F.OrderShipped)

    assert (saga.status, saga.cancel_reason) == (OrderStatus.CANCELLED, CancelReason.out_of_stock)
    assert transition.absorbed


@pytest.mark.parametrize(
    ("facts", "outstanding"),
    [
        ([], {SagaFact.ShippingFailed}),
        ([SagaFact.ShippingFailed], set()),
        ([SagaFact.PaymentProcessed], {SagaFact.ShippingFailed, SagaFact.PaymentRefunded}),
        ([SagaFact.PaymentProcessed, SagaFact.ShippingFailed], {SagaFact.PaymentRefunded}),
        (
            [SagaFact.PaymentProcessed, SagaFact.InventoryReserved, SagaFact.ShippingFailed],
            {SagaFact.PaymentRefunded, SagaFact.InventoryReleased},
        ),
        (
            [
                SagaFact.PaymentProcessed,
                SagaFact.InventoryReserved,
                SagaFact.ShippingFailed,
                SagaFact.InventoryReleased,
                SagaFact.PaymentRefunded,
            ],
            set(),
        ),
    ],
)
def test_a_timed_out_saga_awaits_the_refusal_and_the_undoing_of_what_it_took(
    facts: list[SagaFact], outstanding: set[SagaFact]
) -> None:
    saga = Saga.replay([fact for fact in facts if fact is not SagaFact.ShippingFailed][:2])
    assert saga.time_out() or saga.status is OrderStatus.CANCELLED
    for fact in facts:
        saga.record(fact)
    assert saga.outstanding_compensations == outstanding


def test_a_late_charge_after_the_timeout_awaits_its_refund() -> None:
    saga = Saga()
    saga.time_out()
    saga.record(SagaFact.ShippingFailed)
    assert saga.outstanding_compensations == frozenset()
    saga.record(SagaFact.PaymentProcessed)
    assert saga.outstanding_compensations == {SagaFact.PaymentRefunded}


def test_only_a_timed_out_saga_awaits_compensations() -> None:
    assert Saga.replay([SagaFact.PaymentProcessed]).outstanding_compensations == frozenset()
    declined = Saga.replay([SagaFact.PaymentFailed])
    assert declined.outstanding_compensations == frozenset()
