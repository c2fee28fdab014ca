"""Open loop: orders offered at a fixed rate, each sent on time whether or not the last one
was answered, as independent users would. It shows the latency at a given load and whether
the system keeps up with it, which a closed loop (that slows down with the server) cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bench.load import NOT_SENT, Bodies, Clock, accepted_ids, error_counts, open_loop
from bench.sagas import SagaOutcome, outcome, wait_for_sagas
from bench.stats import Summary, rate, summarize
from bench.target import Target

__all__ = [
    "KEEP_UP_GRACE_S",
    "KEEP_UP_SHARE",
    "OpenLoopStep",
    "keep_up_misses",
    "run_open_loop_step",
]

# Kept up: at least this share of the offered rate accepted, and every saga of the step
# completed within this long after the step's last order was due.
KEEP_UP_SHARE = 0.95
KEEP_UP_GRACE_S = 5.0


@dataclass(frozen=True)
class OpenLoopStep:
    offered_per_s: float
    seconds: float
    due: int
    not_sent: int
    accepted: int
    errors: dict[str, int]
    achieved_per_s: float | None
    """Accepted orders per second, from the first due to the last accepted answer."""
    api: Summary | None
    send_lag: Summary | None
    """How late the load generator sent requests: when it lags, it is short of CPU too."""
    sagas: SagaOutcome
    end_of_window: float
    misses: tuple[str, ...]
    """Why it did not keep up; empty when it did."""

    @property
    def kept_up(self) -> bool:
        return not self.misses

    @property
    def drained_after_s(self) -> float | None:
        """From the end of the offered window to the last saga's completion."""
        last = self.sagas.last_completed
        return None if last is None else last - self.end_of_window

    def to_json(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.offered_per_s,
            "seconds": self.seconds,
            "due": self.due,
            "not_sent": self.not_sent,
            "accepted": self.accepted,
            "errors": self.errors,
            "achieved_per_s": self.achieved_per_s,
            "api_latency": self.api.to_json() if self.api else None,
            "send_lag": self.send_lag.to_json() if self.send_lag else None,
            "sagas": self.sagas.to_json(),
            "drained_after_s": self.drained_after_s,
            "kept_up": self.kept_up,
            "misses": list(self.misses),
        }


def keep_up_misses(step: OpenLoopStep) -> tuple[str, ...]:
    """Why ``step`` did not keep up with its offered rate; empty when it did."""
    misses = []
    if step.not_sent:
        misses.append(f"{step.not_sent} not sent (too many in flight)")
    if step.errors:
        misses.append(f"{sum(step.errors.values())} errors")
    if (step.achieved_per_s or 0.0) < KEEP_UP_SHARE * step.offered_per_s:
        misses.append(f"accepted {step.achieved_per_s or 0:.1f}/s of {step.offered_per_s:g}/s")
    if step.sagas.not_completed:
        misses.append(f"{sum(step.sagas.not_completed.values())} sagas not completed")
    drained = step.drained_after_s
    if drained is not None and drained > KEEP_UP_GRACE_S:
        misses.append(f"last saga completed {drained:.1f} s after the window")
    return tuple(misses)


async def run_open_loop_step(
    target: Target,
    bodies: Bodies,
    *,
    offered_per_s: float,
    seconds: float,
    first_index: int,
    saga_timeout: float,
    max_in_flight: int,
) -> OpenLoopStep:
    """Offer ``offered_per_s`` orders per second for ``seconds``; wait for the sagas."""
    clock = Clock()
    start = clock.now()
    attempts = await open_loop(
        target.order_url,
        bodies,
        rate=offered_per_s,
        seconds=seconds,
        clock=clock,
        first_index=first_index,
        max_in_flight=max_in_flight,
    )
    ids = accepted_ids(attempts)
    rows = await wait_for_sagas(target.database_dsn("order"), ids, saga_timeout)
    last_answer = max((a.finished for a in attempts if a.accepted), default=start)
    step = OpenLoopStep(
        offered_per_s=offered_per_s,
        seconds=seconds,
        due=len(attempts),
        not_sent=sum(1 for a in attempts if a.status == NOT_SENT),
        accepted=len(ids),
        errors={k: v for k, v in error_counts(attempts).items() if k != "too many in flight"},
        achieved_per_s=rate(len(ids), last_answer - start),
        api=summarize(a.latency_ms for a in attempts if a.accepted),
        send_lag=summarize((a.sent - a.due) * 1000 for a in attempts if a.sent is not None),
        sagas=outcome(rows, len(ids)),
        end_of_window=start + seconds,
        misses=(),
    )
    return replace(step, misses=keep_up_misses(step))
