"""How long a saga may wait in each status before it counts as stuck. Pure: no I/O.

A saga that stops moving (its next event was dead-lettered, a service is gone) would
otherwise wait forever. Each non-terminal status gets a deadline, counted from the moment the
order entered it (``orders.updated_at``); past it, the saga is overdue: listed by
``GET /orders?stuck=true``, flagged by the explorer, and cancelled by the deadline sweeper.

A saga the sweeper cancelled gets one more deadline, ``compensation``: how long it may wait
for its compensations (``Saga.outstanding_compensations``) without a move, counted from its
last change. Past it, it is listed as stuck; nothing cancels it again.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.order.model import OrderStatus

__all__ = ["Deadlines"]


@dataclass(frozen=True)
class Deadlines:
    """The longest a saga may stay ``PENDING`` (to be paid), ``PAID`` (to be reserved) and
    ``RESERVED`` (to be shipped), and a timed-out saga for its compensations."""

    pending: timedelta = timedelta(seconds=30)
    paid: timedelta = timedelta(seconds=60)
    reserved: timedelta = timedelta(minutes=5)
    compensation: timedelta = timedelta(seconds=60)

    def __post_init__(self) -> None:
        for name in ("pending", "paid", "reserved", "compensation"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"the {name} deadline must be positive")

    def allowed(self, status: OrderStatus) -> timedelta | None:
        """How long a saga may stay in ``status``; None for a terminal status."""
        return {
            OrderStatus.PENDING: self.pending,
            OrderStatus.PAID: self.paid,
            OrderStatus.RESERVED: self.reserved,
        }.get(status)

    def due(self, status: OrderStatus, since: datetime) -> datetime | None:
        """When a saga that entered ``status`` at ``since`` becomes overdue; None if never."""
        allowed = self.allowed(status)
        return None if allowed is None else since + allowed

    def is_overdue(self, status: OrderStatus, since: datetime, now: datetime) -> bool:
        """Whether a saga that entered ``status`` at ``since`` is past its deadline at ``now``."""
        due = self.due(status, since)
        return due is not None and now >= due
