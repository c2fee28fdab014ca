"""Which sagas need a look, and why. No I/O of its own (the dead letters come through a
protocol).

A saga is stuck while it is not terminal and either has stayed in its status past that
status's deadline (``Deadlines``), or one of its events sits in a dead-letter topic: nothing
will move it until someone replays that event (or the deadline sweeper gives up on it). A
terminal saga is never stuck, even with dead letters left behind: a replay that completed it
leaves its dead letter where it was.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.order.deadlines import Deadlines
from services.order.model import OrderStatus

__all__ = ["DeadLetterSource", "StuckCriteria", "StuckFinder", "Why"]


@dataclass(frozen=True)
class Why:
    """Why one saga is stuck: past its deadline since ``overdue_since``, and/or waiting on
    dead letters in ``dead_letter_topics``."""

    overdue_since: datetime | None
    dead_letter_topics: tuple[str, ...]

    def __str__(self) -> str:
        reasons = []
        if self.overdue_since is not None:
            reasons.append(f"past its deadline since {self.overdue_since:%Y-%m-%d %H:%M:%S} UTC")
        if self.dead_letter_topics:
            reasons.append(f"dead-lettered in {', '.join(self.dead_letter_topics)}")
        return "; ".join(reasons)


@dataclass(frozen=True)
class StuckCriteria:
    """The deadlines, and the topics holding each order's dead letters (by order id)."""

    deadlines: Deadlines
    dead_letters: Mapping[str, Collection[str]]

    def why(self, status: OrderStatus, since: datetime, order_id: str, now: datetime) -> Why | None:
        """Why the saga of ``order_id``, in ``status`` since ``since``, is stuck at ``now``;
        None when it is not."""
        if status.is_terminal:
            return None
        due = self.deadlines.due(status, since)
        overdue_since = due if due is not None and now >= due else None
        topics = tuple(sorted(self.dead_letters.get(order_id, ())))
        if overdue_since is None and not topics:
            return None
        return Why(overdue_since, topics)


class DeadLetterSource(Protocol):
    """Where the dead letters are known (``shared.dead_letter_index.DeadLetterIndex``)."""

    async def refresh(self) -> None: ...

    def topics_by_order(self) -> dict[str, set[str]]: ...


@dataclass(frozen=True)
class StuckFinder:
    """The criteria of the moment: the deadlines, and the dead letters as Kafka has them now."""

    deadlines: Deadlines
    dead_letters: DeadLetterSource

    async def criteria(self) -> StuckCriteria:
        """Raises what reading the dead-letter topics raises (Kafka unreachable, a timeout)."""
        await self.dead_letters.refresh()
        return StuckCriteria(self.deadlines, self.dead_letters.topics_by_order())
