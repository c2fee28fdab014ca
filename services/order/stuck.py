"""Which sagas need a look, and why. No I/O of its own (the dead letters come through a
protocol).

A saga is stuck while it is not terminal and either has stayed in its status past that
status's deadline (``Deadlines``), or one of its events sits in a dead-letter topic: nothing
will move it until someone replays that event (or the deadline sweeper gives up on it).

A terminal saga is not stuck, even with dead letters left behind (a replay that completed
it leaves its dead letter where it was), but for one: a saga the sweeper cancelled
(``timed_out``) whose compensations are not all confirmed (``Saga.outstanding_compensations``)
and that has not moved for the compensation deadline. Its customer may still be charged, or
its stock reserved, because a compensation was dead-lettered or a service is away; it stays
stuck until the missing events arrive.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.order.deadlines import Deadlines
from services.order.model import OrderStatus, SagaFact

__all__ = ["DeadLetterSource", "StuckCriteria", "StuckFinder", "Why"]


@dataclass(frozen=True)
class Why:
    """Why one saga is stuck: past its deadline since ``overdue_since``, waiting on dead
    letters in ``dead_letter_topics``, and/or timed out with the compensations of
    ``awaiting`` outstanding."""

    overdue_since: datetime | None
    dead_letter_topics: tuple[str, ...]
    awaiting: tuple[str, ...] = ()

    def __str__(self) -> str:
        reasons = []
        if self.awaiting:
            since = (
                f" since {self.overdue_since:%Y-%m-%d %H:%M:%S} UTC" if self.overdue_since else ""
            )
            reasons.append(f"timed out, still awaiting {', '.join(self.awaiting)}{since}")
        elif self.overdue_since is not None:
            reasons.append(f"past its deadline since {self.overdue_since:%Y-%m-%d %H:%M:%S} UTC")
        if self.dead_letter_topics:
            reasons.append(f"dead-lettered in {', '.join(self.dead_letter_topics)}")
        return "; ".join(reasons)


@dataclass(frozen=True)
class StuckCriteria:
    """The deadlines a saga is held to (the dead letters are in the order database)."""

    deadlines: Deadlines

    def why(
        self,
        status: OrderStatus,
        since: datetime,
        now: datetime,
        *,
        dead_letter_topics: Collection[str] = (),
        outstanding: Collection[SagaFact] = (),
    ) -> Why | None:
        """Why a saga in ``status`` since ``since`` (its last move), with dead letters in
        ``dead_letter_topics`` and the compensations ``outstanding``, is stuck at ``now``;
        None when it is not."""
        topics = tuple(sorted(dead_letter_topics))
        if outstanding:
            due = since + self.deadlines.compensation
            if now < due:
                return None
            return Why(due, topics, tuple(sorted(outstanding)))
        if status.is_terminal:
            return None
        due_at = self.deadlines.due(status, since)
        overdue_since = due_at if due_at is not None and now >= due_at else None
        if overdue_since is None and not topics:
            return None
        return Why(overdue_since, topics)


class DeadLetterSource(Protocol):
    """Where the dead letters are read (``shared.ops.dead_letter_index.DeadLetterIndex``, which
    writes their positions to the order database)."""

    async def refresh(self) -> None: ...


@dataclass(frozen=True)
class StuckFinder:
    """The criteria of the moment: the deadlines, once the dead letters Kafka holds now are
    indexed."""

    deadlines: Deadlines
    dead_letters: DeadLetterSource

    async def criteria(self) -> StuckCriteria:
        """Raises what reading the dead-letter topics raises (Kafka unreachable, a timeout)."""
        await self.dead_letters.refresh()
        return StuckCriteria(self.deadlines)
