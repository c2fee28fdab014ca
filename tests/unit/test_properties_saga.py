"""Property tests of the sagas' rules: any delivery order and any copies, the same end.

Events of one order come from different topics, so they reach a service in any order, and
Kafka delivers at least once, so any of them may come again. The services' pure rules must
reach the same end whatever happens. What "whatever" means differs by service:

- order: every interleaving at all (its events come from several producers), with copies;
- payment, inventory, shipping: copies in any interleaving, but a compensation never before
  what it compensates, since the service itself emitted the cause of the compensation after
  committing the effect (inventory reserves only after payment charged, and so on). Refund
  before charge would be a no-op followed by a charge: the rules do not promise otherwise,
  and the saga cannot produce it.

The folds below do what each handler does with the rules (``services/*/handlers.py``), one
order at a time, without the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.inventory.model import (
    ReservationStatus,
    StockLevel,
    can_transition,
    release,
    reserve,
    ship,
)
from services.order.model import CancelReason, OrderStatus, Saga, SagaFact
from services.payment.model import (
    PaymentStatus,
    apply_refund,
    decide_charge,
    decide_refund,
    should_charge,
)
from services.shipping.model import (
    ShipmentDecision,
    decide_shipment,
    refuse_shipment,
    should_ship,
)
from tests.unit.test_order_model import FLOWS  # the saga flows of docs/events.md


@st.composite
def deliveries(draw: st.DrawFn, events: Sequence[object]) -> list[object]:
    """Every one of ``events`` at least once, in any order, some of them more than once."""
    copies = draw(st.lists(st.sampled_from(events), max_size=3 * len(events)))
    return draw(st.permutations([*events, *copies]))


@st.composite
def causal_deliveries(draw: st.DrawFn, cause: str, effects: Sequence[str]) -> list[str]:
    """``cause`` and each of ``effects`` at least once, with copies, every effect after the
    first ``cause``: the order a service can see its own effect's compensations in."""
    before = draw(st.lists(st.just(cause), max_size=2))
    after = draw(deliveries([cause, *effects]))
    return [cause, *before, *after]


@settings(max_examples=300)
@given(data=st.data(), flow=st.sampled_from(sorted(FLOWS)))
def test_any_order_and_any_copies_of_a_sagas_events_give_its_one_end(
    data: st.DataObject, flow: str
) -> None:
    facts, status, reason = FLOWS[flow]
    delivered = data.draw(deliveries(facts))

    saga = Saga()
    transitions = [saga.record(fact) for fact in delivered]

    assert (saga.status, saga.cancel_reason) == (status, reason)
    # OrderCompleted or OrderCancelled is emitted on the one transition that ends the saga.
    assert sum(transition.became_terminal for transition in transitions) == 1


@settings(max_examples=300)
@given(st.lists(st.sampled_from(list(SagaFact)), max_size=20))
def test_whatever_the_facts_a_saga_only_moves_forward_and_ends_once(
    delivered: list[SagaFact],
) -> None:
    saga = Saga()
    ends = 0
    end: tuple[OrderStatus, CancelReason | None] | None = None
    for fact in delivered:
        before = saga.status
        transition = saga.record(fact)
        assert saga.status.rank >= before.rank
        ends += transition.became_terminal
        if end is not None:  # terminal is absorbing: nothing moves it again
            assert (saga.status, saga.cancel_reason) == end
        elif saga.is_terminal:
            end = (saga.status, saga.cancel_reason)
    assert ends == (1 if saga.is_terminal else 0)


def payment_after(deliveries: Sequence[str], balance: Decimal, amount: Decimal) -> tuple:
    """(balance, payment status, charges, refunds) after payment handles ``deliveries``."""
    status: PaymentStatus | None = None
    charges = refunds = 0
    for event in deliveries:
        if event == "OrderCreated":
            if not should_charge(status):
                continue
            decision = decide_charge(balance, amount)
            status = decision.status
            if decision.charged and decision.new_balance is not None:
                balance, charges = decision.new_balance, charges + 1
        elif decide_refund(status):  # InventoryFailed or ShippingFailed
            balance, status, refunds = apply_refund(balance, amount), PaymentStatus.REFUNDED, 1
    return balance, status, charges, refunds


@settings(max_examples=200)
@given(
    data=st.data(),
    failures=st.lists(st.sampled_from(["InventoryFailed", "ShippingFailed"]), max_size=2),
    balance=st.integers(0, 10_000).map(Decimal),
    amount=st.integers(1, 10_000).map(Decimal),
)
def test_a_payment_charges_at_most_once_and_refunds_at_most_once(
    data: st.DataObject, failures: list[str], balance: Decimal, amount: Decimal
) -> None:
    delivered = data.draw(causal_deliveries("OrderCreated", failures))

    after, status, charges, refunds = payment_after(delivered, balance, amount)

    if amount > balance:
        assert (after, status, charges, refunds) == (balance, PaymentStatus.DECLINED, 0, 0)
    elif failures:
        assert (after, status, charges, refunds) == (balance, PaymentStatus.REFUNDED, 1, 1)
    else:
        assert (after, status, charges, refunds) == (balance - amount, PaymentStatus.CHARGED, 1, 0)


def stock_after(
    deliveries: Sequence[str], level: StockLevel, quantity: int
) -> tuple[StockLevel, ReservationStatus | None]:
    """The sku's level and the order's reservation after inventory handles ``deliveries``."""
    status: ReservationStatus | None = None
    lines = [("tea", quantity)]
    for event in deliveries:
        if event == "PaymentProcessed":
            if not can_transition(status, ReservationStatus.RESERVED):
                continue  # the order has a reservation (or a failure) already
            result = reserve({"tea": level}, lines)
            status = result.status
            level = result.levels.get("tea", level)
            continue
        target, move = {
            "OrderShipped": (ReservationStatus.SHIPPED, ship),
            "ShippingFailed": (ReservationStatus.RELEASED, release),
        }[event]
        if can_transition(status, target):
            level, status = move({"tea": level}, lines)["tea"], target
    return level, status


@settings(max_examples=200)
@given(
    data=st.data(),
    closing=st.sampled_from(["OrderShipped", "ShippingFailed"]),
    available=st.integers(0, 50),
    quantity=st.integers(1, 50),
)
def test_stock_is_reserved_at_most_once_and_shipped_or_released_at_most_once(
    data: st.DataObject, closing: str, available: int, quantity: int
) -> None:
    start = StockLevel(available=available)
    delivered = data.draw(causal_deliveries("PaymentProcessed", [closing]))

    level, status = stock_after(delivered, start, quantity)

    assert level.total == start.total
    assert level.reserved == 0
    if quantity > available:
        assert (status, level) == (ReservationStatus.FAILED, start)
    elif closing == "OrderShipped":
        assert status is ReservationStatus.SHIPPED
        assert (level.available, level.shipped) == (available - quantity, quantity)
    else:
        assert (status, level) == (ReservationStatus.RELEASED, start)


@settings(max_examples=100)
@given(order_id=st.text(min_size=1), copies=st.integers(1, 5), fail=st.booleans())
def test_an_order_is_shipped_or_failed_once_however_often_it_comes(
    order_id: str, copies: int, fail: bool
) -> None:
    def decide() -> ShipmentDecision:  # fail: the order was cancelled before it shipped
        return refuse_shipment() if fail else decide_shipment(order_id)

    shipments: list[ShipmentDecision] = []
    for _ in range(copies):
        if should_ship(shipments[-1].status if shipments else None):
            shipments.append(decide())

    assert len(shipments) == 1
    again = decide()
    assert again == shipments[0]  # handled again after a crash: the same tracking id
