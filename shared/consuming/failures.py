"""How a failure to handle a record is treated: dead-lettered at once, retried a few times, or
waited out without limit (``classify``).

How failures are treated (``classify``):

- ``PermanentError`` (``NotAnEvent`` included): dead-lettered at once (attempts: 1);
- data the database refuses (SQLSTATE class 22 data exception, 23 integrity constraint, 54
  program limit exceeded: a numeric overflow, a value too long for its column or index): as
  ``PermanentError``, dead-lettered at once, with ``SQLSTATE <code>: <the server's words>`` in
  ``dlq.error.message``: the same record fails the same way however often it is tried;
- ``TransientError``: retried with backoff, dead-lettered after ``retry_attempts`` in all;
- any other exception (a bug): as ``TransientError``, a few tries and then the DLQ, with its
  class name in ``dlq.error.type``;
- infrastructure unavailable (PostgreSQL connection refused or lost, SQLSTATE class 08
  connection exception, 53 insufficient resources, 57P01-57P03 shutdown or cannot connect
  now, and the other server errors sqlalchemy calls ``OperationalError``; ``OSError``,
  timeouts, no pooled connection free within the pool's timeout), and a race lost to
  another transaction (40001 serialization failure, 40P01 deadlock: never the record's
  fault): retried with backoff *without limit*.

The last row is a choice: the record is fine, our own database is not, and dead-lettering
every record that arrives during a database outage would lose events the contract says are
never lost (docs/contract.md, section 7). The partition waits instead (the consumer keeps
polling and stays in the group) and resumes where it stopped when the database is back.
The data errors are told by their SQLSTATE before the exception's class is looked at:
sqlalchemy's asyncpg dialect wraps a program limit (a value too long for an index) in
``OperationalError``, the class of a lost connection, and a record refused for its data that
was taken for an outage stopped its partition for good.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.backoff import backoff_delay
from shared.contracts.errors import PermanentError, TransientError

__all__ = [
    "DataRefused",
    "Failure",
    "MisroutedEvent",
    "RetryPolicy",
    "classify",
    "dead_letter_reason",
]

# SQLSTATE classes that mean "the server is not there for us right now": 08 connection
# exception, 53 insufficient resources, 57P01-57P03 shutdown / cannot connect now.
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
# "This record's data cannot be stored": 22 data exception, 23 integrity constraint
# violation, 54 program limit exceeded. Tried again, the same record fails the same way.
_REFUSED_DATA_SQLSTATES = ("22", "23", "54")
# Lost a race with another transaction (40001 serialization failure, 40P01 deadlock): the
# next attempt usually wins it.
_RACE_LOST_SQLSTATES = ("40001", "40P01")


class MisroutedEvent(PermanentError):
    """A valid event on a topic that carries another event type: a producer's bug."""


class DataRefused(PermanentError):
    """The database refused a record's data (SQLSTATE class 22, 23 or 54): see ``classify``."""


class Failure(enum.Enum):
    """How the runner treats an exception raised while handling a record."""

    permanent = "permanent"
    transient = "transient"
    unavailable = "unavailable"


def _sqlstate(error: BaseException) -> str:
    # SQLAlchemy wraps the driver's error (``orig``); a connection the pool opens can fail
    # with asyncpg's own (CannotConnectNowError while a restarted server recovers).
    origin = error.orig if isinstance(error, DBAPIError) else error
    state = getattr(origin, "sqlstate", None) or getattr(origin, "pgcode", None)
    return state if isinstance(state, str) else ""


def classify(error: BaseException) -> Failure:
    """The treatment of ``error``: see the module's table."""
    if isinstance(error, PermanentError):
        return Failure.permanent
    if isinstance(error, TransientError):
        return Failure.transient
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return Failure.unavailable
    # Before the exception's class: sqlalchemy's asyncpg dialect wraps a program limit in
    # OperationalError, the class of a lost connection.
    state = _sqlstate(error)
    if state.startswith(_REFUSED_DATA_SQLSTATES):
        return Failure.permanent
    if state in _RACE_LOST_SQLSTATES:
        # Never the record's fault, and never the same race twice in a row for ever: tried
        # again without limit, so that contention cannot dead-letter a good event.
        return Failure.unavailable
    # PoolTimeout: every pooled connection stayed busy for ``pool_timeout``; the database is
    # saturated, not the record wrong, so it must wait like an outage, never dead-letter.
    if isinstance(error, OSError | TimeoutError | PoolTimeout | InterfaceError | OperationalError):
        return Failure.unavailable
    if state.startswith(_UNAVAILABLE_SQLSTATES):
        return Failure.unavailable
    return Failure.transient


def dead_letter_reason(error: BaseException) -> BaseException:
    """What a dead letter says of ``error``: its SQLSTATE and the server's words when the
    database refused the record's data (``DataRefused``), ``error`` itself otherwise."""
    state = _sqlstate(error)
    if isinstance(error, PermanentError) or not state.startswith(_REFUSED_DATA_SQLSTATES):
        return error
    origin = error.orig if isinstance(error, DBAPIError) else error
    # sqlalchemy's asyncpg dialect chains asyncpg's own error, whose text is the server's
    # message alone (the wrapper's adds the statement and its parameters).
    server = origin.__cause__ if origin is not None and origin.__cause__ is not None else origin
    detail = getattr(server, "detail", None)
    words = str(server) + (f" ({detail})" if detail else "")
    return DataRefused(f"SQLSTATE {state}: {words}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing record is tried again."""

    attempts: int = 3
    base_delay_ms: int = 100
    max_delay_ms: int = 5000

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        # Capped so that an unbounded retry of an unavailable database cannot overflow.
        return backoff_delay(min(retry, 30), base_ms=self.base_delay_ms, max_ms=self.max_delay_ms)
