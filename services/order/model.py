"""The order saga's status machine, and order lines and totals. Pure: no I/O.

The outcome events of one order come from different topics, so they reach the order service
in any order. The status is therefore computed from the *set* of outcomes seen so far
(``derive``), and a ``Saga`` adds the two rules a set cannot express: it only moves forward,
and a terminal status (``COMPLETED``, ``CANCELLED``) absorbs every later fact.

Why each fact implies what it does (the other services only act in this order):

=================== ======================================================================
fact                what it proves
=================== ======================================================================
PaymentProcessed    the payment was charged                                 -> ``PAID``
PaymentFailed       the charge was declined, nothing to undo    -> ``CANCELLED`` (declined)
InventoryFailed     inventory acts on ``PaymentProcessed`` only, so it was charged -> ``PAID``
PaymentRefunded     only a charged payment is refunded                      -> ``PAID``
InventoryReserved   the stock was reserved                              -> ``RESERVED``
ShippingFailed      shipping acts on ``InventoryReserved`` only         -> ``RESERVED``
InventoryReleased   only a reservation is released                      -> ``RESERVED``
OrderShipped        the parcel left                                    -> ``COMPLETED``
=================== ======================================================================

A failure becomes ``CANCELLED`` only once every compensation it needs is confirmed by its own
event (docs/contract.md, section 2); until then the order keeps the status the facts imply:

- ``PaymentFailed`` -> ``CANCELLED(payment_declined)`` at once;
- ``InventoryFailed`` + ``PaymentRefunded`` -> ``CANCELLED(out_of_stock)``;
- ``ShippingFailed`` + ``PaymentRefunded`` + ``InventoryReleased``
  -> ``CANCELLED(shipping_failed)``;
- ``OrderShipped`` -> ``COMPLETED``.

The facts that decide the end may arrive before the ones that led there (``OrderShipped``
before ``PaymentProcessed``): the saga ends as soon as the deciding facts are in, and the
stragglers are absorbed.

One end is not proven by facts but decided by the order service itself: a saga that waited
past its status's deadline (``services.order.deadlines``) is ``time_out``-ed to
``CANCELLED(timed_out)`` by the deadline sweeper. It is terminal like the others and absorbs
later facts, with one exception: ``OrderShipped``. The compensations of a timeout follow it
instead of preceding it, and they start only when shipping, the step that cannot be undone,
refuses the order (docs/events.md, "Deadlines"); a parcel that left before shipping heard of
the timeout therefore left with nothing compensated, charged and shipped, and the saga is
``COMPLETED`` after all (the one move from one terminal status to the other).

A timed-out saga is terminal but not done: until its compensations are confirmed by their
own events (``outstanding_compensations``), money or stock may still be held, and the
saga keeps recording the facts that arrive (docs/contract.md, "stuck").
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from shared.contracts.money import ZERO, quantize_money, to_money

__all__ = [
    "CancelReason",
    "OrderLine",
    "OrderStatus",
    "Saga",
    "SagaFact",
    "Transition",
    "derive",
    "fact_for",
    "order_total",
]


class OrderStatus(StrEnum):
    """Where an order's saga stands. ``COMPLETED`` and ``CANCELLED`` are terminal."""

    PENDING = "PENDING"
    PAID = "PAID"
    RESERVED = "RESERVED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"

    @property
    def rank(self) -> int:
        """Progress of the saga: ``PENDING`` < ``PAID`` < ``RESERVED`` < the terminal statuses."""
        return _RANKS[self]

    @property
    def is_terminal(self) -> bool:
        """True for ``COMPLETED`` and ``CANCELLED``, which no later event leaves."""
        return self in (OrderStatus.COMPLETED, OrderStatus.CANCELLED)


_RANKS = {
    OrderStatus.PENDING: 0,
    OrderStatus.PAID: 1,
    OrderStatus.RESERVED: 2,
    OrderStatus.COMPLETED: 3,
    OrderStatus.CANCELLED: 3,
}


class CancelReason(StrEnum):
    """Why an order was cancelled: the failure that ended its saga."""

    payment_declined = "payment_declined"
    out_of_stock = "out_of_stock"
    shipping_failed = "shipping_failed"
    timed_out = "timed_out"


class SagaFact(StrEnum):
    """An outcome the order service consumes; the value is the event's ``event_type``."""

    PaymentProcessed = "PaymentProcessed"
    PaymentFailed = "PaymentFailed"
    InventoryReserved = "InventoryReserved"
    InventoryFailed = "InventoryFailed"
    OrderShipped = "OrderShipped"
    ShippingFailed = "ShippingFailed"
    PaymentRefunded = "PaymentRefunded"
    InventoryReleased = "InventoryReleased"


# The least non-terminal status each fact proves (see the module docstring). OrderShipped and
# PaymentFailed always match a terminal rule first; their entries only keep the table total.
_IMPLIED_STATUS = {
    SagaFact.PaymentProcessed: OrderStatus.PAID,
    SagaFact.InventoryFailed: OrderStatus.PAID,
    SagaFact.PaymentRefunded: OrderStatus.PAID,
    SagaFact.InventoryReserved: OrderStatus.RESERVED,
    SagaFact.ShippingFailed: OrderStatus.RESERVED,
    SagaFact.InventoryReleased: OrderStatus.RESERVED,
    SagaFact.OrderShipped: OrderStatus.RESERVED,
    SagaFact.PaymentFailed: OrderStatus.PENDING,
}

# Checked in this order. Each step of the saga runs only after the previous one succeeded, so
# in a consistent set at most one rule matches; should an inconsistent set ever appear, the
# earliest step decides (a later step cannot legitimately have run), and a shipped parcel
# outranks a shipping failure because it cannot be undone.
_TERMINAL_RULES: tuple[tuple[frozenset[SagaFact], OrderStatus, CancelReason | None], ...] = (
    (
        frozenset({SagaFact.PaymentFailed}),
        OrderStatus.CANCELLED,
        CancelReason.payment_declined,
    ),
    (
        frozenset({SagaFact.InventoryFailed, SagaFact.PaymentRefunded}),
        OrderStatus.CANCELLED,
        CancelReason.out_of_stock,
    ),
    (frozenset({SagaFact.OrderShipped}), OrderStatus.COMPLETED, None),
    (
        frozenset({SagaFact.ShippingFailed, SagaFact.PaymentRefunded, SagaFact.InventoryReleased}),
        OrderStatus.CANCELLED,
        CancelReason.shipping_failed,
    ),
)


# What proves that money or stock was taken (a ShippingFailed may be the timeout's refusal,
# which proves nothing).
_SHOWS_A_CHARGE = frozenset(
    {
        SagaFact.PaymentProcessed,
        SagaFact.InventoryFailed,
        SagaFact.InventoryReserved,
        SagaFact.InventoryReleased,
        SagaFact.PaymentRefunded,
    }
)
_SHOWS_A_RESERVATION = frozenset({SagaFact.InventoryReserved, SagaFact.InventoryReleased})


def fact_for(event_type: str) -> SagaFact | None:
    """The saga fact an event type reports, or None for events that do not move the saga."""
    try:
        return SagaFact(event_type)
    except ValueError:
        return None


def derive(facts: frozenset[SagaFact]) -> tuple[OrderStatus, CancelReason | None]:
    """The status (and cancel reason) that a set of facts proves, whatever order they came in.

    Terminal when a rule of the module docstring matches; otherwise the highest status any
    fact implies (``PENDING`` for no facts). Adding facts never lowers the result's rank.
    """
    for required, status, reason in _TERMINAL_RULES:
        if required <= facts:
            return status, reason
    implied = (_IMPLIED_STATUS[fact] for fact in facts)
    return max(implied, key=lambda status: status.rank, default=OrderStatus.PENDING), None


@dataclass(frozen=True)
class Transition:
    """What recording one fact did to a saga.

    ``became_terminal`` is true on the fact that made the saga ``COMPLETED`` or
    ``CANCELLED``: once in a saga's life, or twice for a timed-out saga whose parcel shipped
    anyway (see the module docstring). That is when the service emits ``OrderCompleted`` or
    ``OrderCancelled``.
    """

    fact: SagaFact
    previous_status: OrderStatus
    status: OrderStatus
    cancel_reason: CancelReason | None
    duplicate: bool
    became_terminal: bool

    @property
    def changed(self) -> bool:
        """True when the status moved."""
        return self.status != self.previous_status

    @property
    def absorbed(self) -> bool:
        """True for a new fact that arrived after the saga was terminal, and changed nothing."""
        return self.previous_status.is_terminal and not self.duplicate and not self.changed


@dataclass
class Saga:
    """One order's saga: its status, cancel reason and every fact seen so far.

    Load it with the stored values, ``record`` a fact, store the result. The status only moves
    forward, and a terminal status absorbs everything (but ``OrderShipped`` after a timeout):
    a later fact is kept in ``facts`` but changes nothing. Recording a fact already seen
    changes nothing at all.
    """

    status: OrderStatus = OrderStatus.PENDING
    cancel_reason: CancelReason | None = None
    facts: frozenset[SagaFact] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self.facts = frozenset(self.facts)
        if (self.status is OrderStatus.CANCELLED) != (self.cancel_reason is not None):
            raise ValueError(
                f"a saga has a cancel reason exactly when it is CANCELLED, "
                f"got status {self.status} with reason {self.cancel_reason}"
            )

    @property
    def is_terminal(self) -> bool:
        """True once the saga is ``COMPLETED`` or ``CANCELLED``."""
        return self.status.is_terminal

    def record(self, fact: SagaFact) -> Transition:
        """Take one outcome into account and say what it changed."""
        previous = self.status
        duplicate = fact in self.facts
        self.facts = self.facts | {fact}
        if duplicate:
            pass
        elif not previous.is_terminal:
            status, reason = derive(self.facts)
            if status.rank > previous.rank:
                self.status, self.cancel_reason = status, reason
        elif self.cancel_reason is CancelReason.timed_out and fact is SagaFact.OrderShipped:
            # The timeout lost to the parcel: nothing was compensated (module docstring).
            self.status, self.cancel_reason = OrderStatus.COMPLETED, None
        return Transition(
            fact=fact,
            previous_status=previous,
            status=self.status,
            cancel_reason=self.cancel_reason,
            duplicate=duplicate,
            became_terminal=self.status.is_terminal and self.status is not previous,
        )

    @property
    def outstanding_compensations(self) -> frozenset[SagaFact]:
        """The compensations a timed-out saga still waits for; empty for any other saga.

        Shipping's refusal (``ShippingFailed``) always: without it nothing is compensated;
        ``PaymentRefunded`` once anything shows a charge; ``InventoryReleased`` once the
        stock was reserved. A fact that arrives after the timeout (a late charge) adds what
        it needs undone.
        """
        if self.cancel_reason is not CancelReason.timed_out:
            return frozenset()
        needed = {SagaFact.ShippingFailed}
        if self.facts & _SHOWS_A_CHARGE:
            needed.add(SagaFact.PaymentRefunded)
        if self.facts & _SHOWS_A_RESERVATION:
            needed.add(SagaFact.InventoryReleased)
        return frozenset(needed) - self.facts

    def time_out(self) -> bool:
        """Cancel the saga because it waited too long (``CANCELLED(timed_out)``).

        Returns False, changing nothing, when the saga already ended: a saga that completed
        or was cancelled for a reason of its own keeps its end.
        """
        if self.is_terminal:
            return False
        self.status, self.cancel_reason = OrderStatus.CANCELLED, CancelReason.timed_out
        return True

    @classmethod
    def replay(cls, facts: Iterable[SagaFact]) -> "Saga":
        """A new saga that has recorded ``facts`` in the order given."""
        saga = cls()
        for fact in facts:
            saga.record(fact)
        return saga


@dataclass(frozen=True)
class OrderLine:
    """One line of an order: ``quantity`` (>= 1) units of ``sku`` at ``unit_price`` each."""

    sku: str
    quantity: int
    unit_price: Decimal

    def __post_init__(self) -> None:
        if not self.sku:
            raise ValueError("an order line needs a sku")
        if isinstance(self.quantity, bool) or self.quantity < 1:
            raise ValueError(f"quantity of {self.sku!r} must be >= 1, got {self.quantity}")
        object.__setattr__(self, "unit_price", to_money(self.unit_price))

    @property
    def subtotal(self) -> Decimal:
        """``quantity`` times ``unit_price``."""
        return quantize_money(self.unit_price * self.quantity)


def order_total(lines: Iterable[OrderLine]) -> Decimal:
    """What the customer pays for ``lines``: the sum of their subtotals, at two places."""
    return quantize_money(sum((line.subtotal for line in lines), ZERO))
