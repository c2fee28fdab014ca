from decimal import Decimal

import pytest

from services.payment.model import (
    ChargeDecision,
    DeclineReason,
    PaymentStatus,
    apply_charge,
    apply_refund,
    decide_charge,
    decide_refund,
    should_charge,
    void_payment,
)

pytestmark = pytest.mark.unit


def test_a_charge_within_the_balance_is_charged_and_lowers_the_balance() -> None:
    decision = decide_charge(Decimal("100.00"), Decimal("30.50"))

    assert decision == ChargeDecision(PaymentStatus.CHARGED, None, Decimal("69.50"))
    assert decision.charged


def test_a_charge_equal_to_the_balance_is_charged_down_to_zero() -> None:
    decision = decide_charge(Decimal("30.50"), Decimal("30.50"))

    assert decision.charged
    assert decision.new_balance == Decimal("0.00")


def test_a_charge_larger_than_the_balance_is_declined_for_insufficient_funds() -> None:
    decision = decide_charge(Decimal("30.49"), Decimal("30.50"))

    assert decision == ChargeDecision(
        PaymentStatus.DECLINED, DeclineReason.insufficient_funds, Decimal("30.49")
    )
    assert not decision.charged


def test_an_unknown_customer_is_declined() -> None:
    decision = decide_charge(None, Decimal("1.00"))

    assert decision == ChargeDecision(PaymentStatus.DECLINED, DeclineReason.unknown_customer, None)


def test_a_zero_charge_is_charged() -> None:
    assert decide_charge(Decimal("0.00"), Decimal("0.00")).charged


@pytest.mark.parametrize("amount", [Decimal("-1.00"), Decimal("1.001"), Decimal("NaN")])
def test_a_charge_of_something_that_is_not_money_is_refused(amount: Decimal) -> None:
    with pytest.raises(ValueError, match="invalid money"):
        decide_charge(Decimal("100.00"), amount)


def test_apply_charge_returns_the_new_balance() -> None:
    assert apply_charge(Decimal("10.00"), Decimal("2.50")) == Decimal("7.50")


def test_apply_charge_refuses_to_overdraw() -> None:
    with pytest.raises(ValueError, match="cannot cover"):
        apply_charge(Decimal("1.00"), Decimal("2.00"))


def test_apply_refund_gives_the_money_back() -> None:
    assert apply_refund(Decimal("7.50"), Decimal("2.50")) == Decimal("10.00")


def test_a_charge_then_its_refund_restores_the_balance() -> None:
    start, amount = Decimal("42.00"), Decimal("13.37")

    after = decide_charge(start, amount).new_balance

    assert after is not None
    assert apply_refund(after, amount) == start


def test_only_a_charged_payment_is_refunded() -> None:
    assert decide_refund(PaymentStatus.CHARGED)


@pytest.mark.parametrize("status", [PaymentStatus.DECLINED, PaymentStatus.REFUNDED, None])
def test_refunding_a_declined_refunded_or_absent_payment_is_a_no_op(
    status: PaymentStatus | None,
) -> None:
    assert not decide_refund(status)


def test_an_order_without_a_payment_may_be_charged() -> None:
    assert should_charge(None)


@pytest.mark.parametrize("existing", list(PaymentStatus))
def test_an_order_with_any_payment_is_never_charged_again(existing: PaymentStatus) -> None:
    assert not should_charge(existing)


def test_statuses_and_reasons_are_the_contract_strings() -> None:
    assert [s.value for s in PaymentStatus] == ["CHARGED", "DECLINED", "REFUNDED"]
    assert DeclineReason.insufficient_funds == "insufficient_funds"
    assert DeclineReason.unknown_customer == "unknown_customer"


def test_a_voided_payment_is_declined_as_cancelled_and_is_never_charged_nor_refunded() -> None:
    decision = void_payment()

    assert decision == ChargeDecision(PaymentStatus.DECLINED, DeclineReason.order_cancelled, None)
    assert not decision.charged
    assert not should_charge(decision.status)
    assert not decide_refund(decision.status)
