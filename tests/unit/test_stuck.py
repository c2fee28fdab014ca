"""Which sagas are stuck and why (services.order.stuck), and the age filter's format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from services.order.api import Age
from services.order.deadlines import Deadlines
from services.order.model import OrderStatus, SagaFact
from services.order.stuck import StuckCriteria, StuckFinder, Why

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CRITERIA = StuckCriteria(
    Deadlines(pending=timedelta(seconds=30), compensation=timedelta(seconds=60))
)
LETTERS = {"b-dlq", "a-dlq"}


def test_a_saga_within_its_deadline_and_without_dead_letters_is_not_stuck() -> None:
    assert CRITERIA.why(OrderStatus.PENDING, NOW - timedelta(seconds=29), NOW) is None


def test_a_saga_past_its_deadline_is_stuck_since_the_deadline() -> None:
    why = CRITERIA.why(OrderStatus.PENDING, NOW - timedelta(seconds=45), NOW)
    assert why == Why(overdue_since=NOW - timedelta(seconds=15), dead_letter_topics=())
    assert str(why) == "past its deadline since 2026-12-01 11:59:45 UTC"


def test_a_saga_with_dead_letters_is_stuck_at_once_naming_the_topics() -> None:
    why = CRITERIA.why(OrderStatus.PAID, NOW, NOW, dead_letter_topics=LETTERS)
    assert why == Why(overdue_since=None, dead_letter_topics=("a-dlq", "b-dlq"))
    assert str(why) == "dead-lettered in a-dlq, b-dlq"


@pytest.mark.parametrize("status", [OrderStatus.COMPLETED, OrderStatus.CANCELLED])
def test_a_terminal_saga_is_never_stuck_even_with_dead_letters_left(status: OrderStatus) -> None:
    old = NOW - timedelta(days=9)
    assert CRITERIA.why(status, old, NOW, dead_letter_topics=LETTERS) is None


def test_a_timed_out_saga_awaiting_a_compensation_is_stuck_past_the_compensation_deadline() -> None:
    awaiting = {SagaFact.PaymentRefunded}
    cancelled = OrderStatus.CANCELLED
    assert CRITERIA.why(cancelled, NOW - timedelta(seconds=59), NOW, outstanding=awaiting) is None
    why = CRITERIA.why(
        cancelled, NOW - timedelta(seconds=90), NOW, outstanding=awaiting, dead_letter_topics=["x"]
    )
    assert why == Why(NOW - timedelta(seconds=30), ("x",), ("PaymentRefunded",))
    assert str(why) == (
        "timed out, still awaiting PaymentRefunded since 2026-12-01 11:59:30 UTC; "
        "dead-lettered in x"
    )


class FakeDeadLetters:
    def __init__(self) -> None:
        self.refreshed = 0

    async def refresh(self) -> None:
        self.refreshed += 1


async def test_the_finder_reads_the_dead_letters_anew_for_each_criteria() -> None:
    letters = FakeDeadLetters()
    finder = StuckFinder(Deadlines(), letters)
    criteria = await finder.criteria()
    assert letters.refreshed == 1
    assert criteria.deadlines == Deadlines()


AGE: TypeAdapter[timedelta] = TypeAdapter(Age)


@pytest.mark.parametrize(
    ("given", "age"),
    [
        ("90", timedelta(seconds=90)),
        ("1.5", timedelta(seconds=1.5)),
        ("PT5M", timedelta(minutes=5)),
        ("P1DT2H", timedelta(days=1, hours=2)),
    ],
)
def test_an_age_is_seconds_or_an_iso_8601_duration(given: str, age: timedelta) -> None:
    assert AGE.validate_python(given) == age


@pytest.mark.parametrize("given", ["0", "-5", "soon", "nan", "inf", "PT0S"])
def test_an_age_that_is_not_a_positive_duration_is_refused(given: str) -> None:
    with pytest.raises(ValidationError):
        AGE.validate_python(given)
