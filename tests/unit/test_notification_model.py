import pytest

from services.notification.model import (
    NotificationStatus,
    Verdict,
    after_attempt,
    describe,
    first_status,
    judge_answer,
)

pytestmark = pytest.mark.unit


def test_a_notification_for_a_known_customer_is_to_deliver_when_there_is_a_webhook() -> None:
    assert first_status(customer_known=True, webhook=True) is NotificationStatus.PENDING


def test_without_a_webhook_a_notification_is_recorded_only() -> None:
    assert first_status(customer_known=True, webhook=False) is NotificationStatus.RECORDED


def test_a_notification_whose_customer_is_unknown_waits_for_it() -> None:
    for webhook in (True, False):
        status = first_status(customer_known=False, webhook=webhook)
        assert status is NotificationStatus.AWAITING_CUSTOMER


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_a_2xx_answer_delivers(code: int) -> None:
    assert judge_answer(code) is Verdict.DELIVERED


@pytest.mark.parametrize("code", [None, 408, 425, 429, 500, 502, 503, 504])
def test_no_answer_a_server_error_or_a_busy_receiver_is_tried_again(code: int | None) -> None:
    assert judge_answer(code) is Verdict.RETRY


@pytest.mark.parametrize("code", [301, 400, 401, 403, 404, 410, 422])
def test_any_other_answer_is_a_refusal_for_good(code: int) -> None:
    assert judge_answer(code) is Verdict.REFUSED


def test_a_delivered_attempt_ends_delivered_even_as_the_last() -> None:
    status = after_attempt(Verdict.DELIVERED, attempts=3, max_attempts=3)
    assert status is NotificationStatus.DELIVERED


def test_a_failed_attempt_is_tried_again_while_attempts_remain() -> None:
    status = after_attempt(Verdict.RETRY, attempts=2, max_attempts=3)
    assert status is NotificationStatus.PENDING


def test_a_failed_last_attempt_dead_letters_the_notification() -> None:
    assert after_attempt(Verdict.RETRY, attempts=3, max_attempts=3) is NotificationStatus.DEAD


def test_a_refusal_dead_letters_at_once() -> None:
    assert after_attempt(Verdict.REFUSED, attempts=1, max_attempts=8) is NotificationStatus.DEAD


def test_each_notified_event_reads_as_a_sentence_with_its_details() -> None:
    assert describe("OrderCompleted", "o-1", {"total": "12.50"}) == (
        "Your order o-1 is on its way: 12.50 charged."
    )
    assert describe("OrderCancelled", "o-1", {"reason": "payment_declined"}) == (
        "Your order o-1 was cancelled (payment_declined)."
    )
    assert describe("PaymentRefunded", "o-1", {"amount": "3.00"}) == (
        "3.00 for your order o-1 was refunded."
    )


def test_a_missing_detail_reads_as_a_question_mark_rather_than_failing() -> None:
    assert describe("OrderCancelled", "o-1", {}) == "Your order o-1 was cancelled (?)."
    assert describe("Other", "o-1", {}) == "Your order o-1: Other."
