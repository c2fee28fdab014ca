import pytest
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.consuming.failures import (
    Failure,
    MisroutedEvent,
    RetryPolicy,
    classify,
    dead_letter_reason,
)
from shared.contracts.errors import NotAnEvent, PermanentError, TransientError


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


@pytest.mark.parametrize(
    "error",
    [
        # The classes asyncpg's errors come wrapped in (sqlalchemy's asyncpg dialect): a data
        # exception is a DataError, a constraint an IntegrityError, a program limit (a value
        # too long for an index) an OperationalError.
        DataError("INSERT", {}, _Orig("22003")),
        DataError("INSERT", {}, _Orig("22001")),
        IntegrityError("INSERT", {}, _Orig("23505")),
        IntegrityError("INSERT", {}, _Orig("23514")),
        OperationalError("INSERT", {}, _Orig("54000")),
    ],
)
def test_data_the_database_refuses_is_permanent_not_an_outage(error: BaseException) -> None:
    assert classify(error) is Failure.permanent


def test_a_data_error_is_dead_lettered_with_its_sqlstate_and_the_servers_words() -> None:
    cause = _Orig("22003")
    cause.args = ("numeric field overflow",)
    cause.detail = "A field with precision 4, scale 2 must round to less than 10^2."  # type: ignore[attr-defined]
    adapted = _Orig("22003")
    adapted.__cause__ = cause  # as sqlalchemy's asyncpg dialect chains them
    wrapped = DataError("INSERT", {}, adapted)

    reason = dead_letter_reason(wrapped)

    assert isinstance(reason, PermanentError)
    assert str(reason) == (
        "SQLSTATE 22003: numeric field overflow "
        "(A field with precision 4, scale 2 must round to less than 10^2.)"
    )
    assert dead_letter_reason(PermanentError("no")).args == ("no",)


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_race_lost_to_another_transaction_is_tried_again_until_it_is_won(
    sqlstate: str,
) -> None:
    # Never the record's fault: contention must not dead-letter a good event.
    assert classify(OperationalError("UPDATE", {}, _Orig(sqlstate))) is Failure.unavailable
    assert classify(DBAPIError("UPDATE", {}, _Orig(sqlstate))) is Failure.unavailable


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("db down"),
        TimeoutError(),
        OperationalError("SELECT 1", {}, _Orig("08006")),
        OperationalError("SELECT 1", {}, ConnectionResetError()),  # lost: no SQLSTATE
        # Neither the record's data nor a lost race: waited out, as before.
        OperationalError("SELECT 1", {}, _Orig("57014")),
        OperationalError("SELECT 1", {}, _Orig("55P03")),
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
