"""Stock rules: reserve all lines or none, release, ship, and which step may follow which.

Pure: the functions take the current ``StockLevel`` of each sku and return the new ones; the
caller loads and stores them. Every move keeps ``available + reserved + shipped`` of a sku
constant; only ``restock`` (the admin's ``PUT /stock/{sku}``) changes what is on hand.

A reservation belongs to one order and moves at most twice::

    (none) -> RESERVED -> RELEASED      (shipping failed: the stock goes back)
                       -> SHIPPED       (the parcel left: the stock is gone)
    (none) -> FAILED

so a redelivered, duplicated or late event finds its step already taken and does nothing
(``can_transition``).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

__all__ = [
    "ALLOWED_TRANSITIONS",
    "FailureReason",
    "Line",
    "ReservationResult",
    "ReservationStatus",
    "StockLevel",
    "can_transition",
    "quantities_by_sku",
    "release",
    "reserve",
    "restock",
    "ship",
]

Line = tuple[str, int]
"""An order line as inventory sees it: ``(sku, quantity)``."""


class ReservationStatus(StrEnum):
    """Where an order's reservation stands."""

    RESERVED = "RESERVED"
    FAILED = "FAILED"
    RELEASED = "RELEASED"
    SHIPPED = "SHIPPED"


class FailureReason(StrEnum):
    """Why a reservation failed (the ``reason`` of ``InventoryFailed``).

    ``order_cancelled`` is no reservation's outcome: it marks an order whose release came
    before its reservation (the order service cancelled it: a timed-out saga, see
    docs/events.md), recorded ``FAILED`` so that its late ``PaymentProcessed`` reserves
    nothing.
    """

    unknown_sku = "unknown_sku"
    out_of_stock = "out_of_stock"
    order_cancelled = "order_cancelled"


ALLOWED_TRANSITIONS: Final[Mapping[ReservationStatus | None, frozenset[ReservationStatus]]] = {
    None: frozenset({ReservationStatus.RESERVED, ReservationStatus.FAILED}),
    ReservationStatus.RESERVED: frozenset({ReservationStatus.RELEASED, ReservationStatus.SHIPPED}),
    ReservationStatus.FAILED: frozenset(),
    ReservationStatus.RELEASED: frozenset(),
    ReservationStatus.SHIPPED: frozenset(),
}
"""For each status of an order's reservation (None: there is none yet), where it may go."""


def can_transition(current: ReservationStatus | None, target: ReservationStatus) -> bool:
    """Whether a reservation in ``current`` (None: none yet) may move to ``target``.

    False means the event asking for the move was already handled or came too late: skip it.
    """
    return target in ALLOWED_TRANSITIONS[current]


@dataclass(frozen=True)
class StockLevel:
    """The units of one sku: free to sell, held for paid orders, and gone with parcels."""

    available: int
    reserved: int = 0
    shipped: int = 0

    def __post_init__(self) -> None:
        for name in ("available", "reserved", "shipped"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"stock {name} must be a whole number >= 0, got {value!r}")

    @property
    def total(self) -> int:
        """Everything ever put in: ``available + reserved + shipped``."""
        return self.available + self.reserved + self.shipped


@dataclass(frozen=True)
class ReservationResult:
    """The outcome of ``reserve``.

    ``RESERVED``: ``levels`` holds the new level of every sku on the lines. ``FAILED``:
    ``reason`` says why, ``failed_skus`` which skus (in the order of the lines), and
    ``levels`` is empty because nothing moved.
    """

    status: ReservationStatus
    reason: FailureReason | None = None
    failed_skus: tuple[str, ...] = ()
    levels: Mapping[str, StockLevel] = field(default_factory=dict)

    @property
    def reserved(self) -> bool:
        """True when every line was reserved."""
        return self.status is ReservationStatus.RESERVED


def quantities_by_sku(lines: Sequence[Line]) -> dict[str, int]:
    """The quantity wanted of each sku, summed over lines that repeat it, in line order.

    Raises ``ValueError`` for a quantity below 1.
    """
    wanted: dict[str, int] = {}
    for sku, quantity in lines:
        if isinstance(quantity, bool) or quantity < 1:
            raise ValueError(f"quantity of {sku!r} must be >= 1, got {quantity}")
        wanted[sku] = wanted.get(sku, 0) + quantity
    return wanted


def reserve(levels: Mapping[str, StockLevel | None], lines: Sequence[Line]) -> ReservationResult:
    """Reserve every line or none: ``available -= q`` and ``reserved += q`` for each sku.

    ``levels`` maps each sku to its stock (None or missing: the sku is unknown). Lines of the
    same sku are summed before checking. If any sku is unknown the reservation fails with
    ``unknown_sku``, whatever the other lines: a sku the shop does not stock is a mistake in
    the order that no restock fixes, so it is the reason worth reporting. Otherwise, if any sku
    lacks the units, it fails with ``out_of_stock``.
    """
    wanted = quantities_by_sku(lines)
    unknown = tuple(sku for sku in wanted if levels.get(sku) is None)
    if unknown:
        return _failed(FailureReason.unknown_sku, unknown)
    known = {sku: _known(levels, sku) for sku in wanted}
    short = tuple(sku for sku, quantity in wanted.items() if quantity > known[sku].available)
    if short:
        return _failed(FailureReason.out_of_stock, short)
    return ReservationResult(
        ReservationStatus.RESERVED,
        levels={
            sku: replace(
                known[sku],
                available=known[sku].available - quantity,
                reserved=known[sku].reserved + quantity,
            )
            for sku, quantity in wanted.items()
        },
    )


def release(levels: Mapping[str, StockLevel], lines: Sequence[Line]) -> dict[str, StockLevel]:
    """Give reserved units back to ``available``; the new level of every sku on the lines.

    Call it only for a ``RESERVED`` reservation (see ``can_transition``). Raises
    ``ValueError`` if a sku is missing or holds fewer reserved units than the lines.
    """
    return {
        sku: replace(
            level, reserved=level.reserved - quantity, available=level.available + quantity
        )
        for sku, quantity, level in _reserved_lines(levels, lines)
    }


def ship(levels: Mapping[str, StockLevel], lines: Sequence[Line]) -> dict[str, StockLevel]:
    """Move reserved units to ``shipped``; the new level of every sku on the lines.

    Call it only for a ``RESERVED`` reservation (see ``can_transition``). Raises
    ``ValueError`` if a sku is missing or holds fewer reserved units than the lines.
    """
    return {
        sku: replace(level, reserved=level.reserved - quantity, shipped=level.shipped + quantity)
        for sku, quantity, level in _reserved_lines(levels, lines)
    }


def restock(level: StockLevel | None, available: int) -> StockLevel:
    """Set the units on hand of a sku (new or known); what is reserved or shipped stays."""
    if level is None:
        return StockLevel(available=available)
    return replace(level, available=available)


def _failed(reason: FailureReason, skus: tuple[str, ...]) -> ReservationResult:
    return ReservationResult(ReservationStatus.FAILED, reason=reason, failed_skus=skus)


def _known(levels: Mapping[str, StockLevel | None], sku: str) -> StockLevel:
    level = levels.get(sku)
    if level is None:
        raise ValueError(f"no stock level for sku {sku!r}")
    return level


def _reserved_lines(
    levels: Mapping[str, StockLevel], lines: Sequence[Line]
) -> list[tuple[str, int, StockLevel]]:
    checked = []
    for sku, quantity in quantities_by_sku(lines).items():
        level = _known(levels, sku)
        if level.reserved < quantity:
            raise ValueError(
                f"sku {sku!r} has {level.reserved} units reserved, cannot take {quantity} "
                f"from them: was this reservation already released or shipped?"
            )
        checked.append((sku, quantity, level))
    return checked
