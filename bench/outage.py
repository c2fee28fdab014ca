"""Payment stopped for a while: what each design does meanwhile, and after.

Orders are offered at a steady rate (an open loop) before, during and after a stop of every
payment process. The processes are frozen with SIGSTOP and thawed with SIGCONT, as a hung
process or a network partition would leave them: they hold their connections and answer
nothing, and the same signal stops either design. The event-driven system should go on
accepting orders and finish their sagas once payment is back; the synchronous chain cannot
accept an order it cannot charge.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import Attempt, Bodies, Clock, accepted_ids, error_counts, open_loop
from bench.sagas import TERMINAL, wait_for_sagas
from bench.stats import Summary, summarize

__all__ = ["OutageResult", "Phase", "check_processes", "run_outage"]


@dataclass(frozen=True)
class Phase:
    """The orders due in one phase (before, during or after the stop)."""

    due: int
    accepted: int
    errors: dict[str, int]
    api: Summary | None

    @classmethod
    def of(cls, attempts: Sequence[Attempt]) -> Phase:
        accepted = [a for a in attempts if a.accepted]
        return cls(
            due=len(attempts),
            accepted=len(accepted),
            errors=error_counts(list(attempts)),
            api=summarize(a.latency_ms for a in accepted),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "due": self.due,
            "accepted": self.accepted,
            "errors": self.errors,
            "api_latency": self.api.to_json() if self.api else None,
        }


@dataclass(frozen=True)
class OutageResult:
    design: str
    offered_per_s: float
    stopped: dict[str, int]
    """The processes stopped, by name, with their pids."""
    stop_seconds: float
    before: Phase
    during: Phase
    after: Phase
    drain_s: float | None
    """From the resume until every order due before it had finished (saga ended, or the
    request answered for a design without sagas); None when some never did."""
    unfinished: int

    def to_json(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "offered_per_s": self.offered_per_s,
            "stopped": self.stopped,
            "stop_seconds": self.stop_seconds,
            "before": self.before.to_json(),
            "during": self.during.to_json(),
            "after": self.after.to_json(),
            "drain_after_resume_s": self.drain_s,
            "unfinished": self.unfinished,
        }


def check_processes(pids: dict[str, int], marker: str) -> None:
    """Refuse to signal a pid whose command line does not name ``marker`` (a stale pid)."""
    for name, pid in pids.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError as error:
            raise RuntimeError(f"{name} (pid {pid}) is not running") from error
        if marker not in cmdline:
            raise RuntimeError(f"pid {pid} is not {name} ({marker}): {cmdline[:120]}")


async def _stop_for(pids: Sequence[int], seconds: float) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        # Always thawed, even when the run is interrupted: a frozen service stays frozen.
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


async def run_outage(
    design: str,
    order_url: str,
    bodies: Bodies,
    stop: dict[str, int],
    *,
    rate: float,
    before_s: float,
    stop_s: float,
    after_s: float,
    order_dsn: str | None,
    saga_timeout: float,
    first_index: int,
) -> OutageResult:
    """Offer ``rate`` orders/s for ``before_s + stop_s + after_s``; stop ``stop`` in between.

    ``order_dsn``: the order database of an event-driven system, whose sagas end after the
    answer; None for the synchronous chain, whose orders end with it.
    """
    clock = Clock()
    start = clock.now()
    stopped_at, resumed_at = start + before_s, start + before_s + stop_s

    async def outage() -> None:
        await asyncio.sleep(before_s)
        await _stop_for(list(stop.values()), stop_s)

    attempts, _ = await asyncio.gather(
        open_loop(
            order_url,
            bodies,
            rate=rate,
            seconds=before_s + stop_s + after_s,
            clock=clock,
            first_index=first_index,
        ),
        outage(),
    )
    finished = {a.index: a.finished for a in attempts}
    unfinished = 0
    if order_dsn is not None:
        ids = accepted_ids(attempts)
        ends = {
            row.order_id: row.updated
            for row in await wait_for_sagas(order_dsn, ids, saga_timeout)
            if row.status in TERMINAL
        }
        for attempt in attempts:
            if attempt.accepted and attempt.order_id is not None:
                end = ends.get(attempt.order_id)
                if end is None:
                    unfinished += 1
                    finished.pop(attempt.index)
                else:
                    finished[attempt.index] = end
    due_before_resume = [a for a in attempts if a.due < resumed_at]
    ends_before_resume = [finished[a.index] for a in due_before_resume if a.index in finished]
    drain = (
        max(0.0, max(ends_before_resume, default=resumed_at) - resumed_at)
        if len(ends_before_resume) == len(due_before_resume)
        else None
    )
    return OutageResult(
        design=design,
        offered_per_s=rate,
        stopped=stop,
        stop_seconds=stop_s,
        before=Phase.of([a for a in attempts if a.due < stopped_at]),
        during=Phase.of([a for a in attempts if stopped_at <= a.due < resumed_at]),
        after=Phase.of([a for a in attempts if a.due >= resumed_at]),
        drain_s=drain,
        unfinished=unfinished,
    )
