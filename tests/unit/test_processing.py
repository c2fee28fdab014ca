import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.errors import NotAnEvent, PermanentError, TransientError
from shared.processing import Failure, MisroutedEvent, RetryPolicy, classify


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_permanent_errors_and_bytes_that_are_not_events_are_not_retried() -> None:
    for error in (PermanentError("no"), NotAnEvent("junk"), MisroutedEvent("wrong topic")):
        assert classify(error) is Failure.permanent


def test_a_transient_error_is_retried_up_to_the_limit() -> None:
    assert classify(TransientError("again")) is Failure.transient


def test_an_unknown_exception_is_treated_as_transient() -> None:
    assert classify(KeyError("bug")) is Failure.transient


def test_a_constraint_violation_is_transient_not_an_outage() -> None:
    error = IntegrityError("INSERT", {}, _Orig("23505"))
    assert classify(error) is Failure.transient


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("db down"),
        TimeoutError(),
        OperationalError("SELECT 1", {}, _Orig("08006")),
        DBAPIError("SELECT 1", {}, _Orig("57P01")),
        DBAPIError("SELECT 1", {}, _Orig("53300")),
        # asyncpg's own, unwrapped: a restarted server still replaying its log (57P03).
        _Orig("57P03"),
        PoolTimeout("QueuePool limit of size 5 overflow 10 reached"),
    ],
)
def test_an_unavailable_database_or_network_is_waited_out(error: BaseException) -> None:
    assert classify(error) is Failure.unavailable


def test_retry_delays_grow_and_stay_under_the_cap() -> None:
    policy = RetryPolicy(attempts=3, base_delay_ms=100, max_delay_ms=400)
    assert 0.05 <= policy.delay(1) <= 0.1
    assert 0.1 <= policy.delay(2) <= 0.2
    assert all(0.2 <= policy.delay(n) <= 0.4 for n in (3, 10, 1000))
