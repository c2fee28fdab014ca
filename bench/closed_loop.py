"""Closed loop: N orders through the order API by concurrent keep-alive clients.

Throughput with the system saturated: orders accepted per second at the API, and sagas
completed per second from the first order's acceptance to the last saga's completion, both
moments taken from the order service's own timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.load import Bodies, Clock, accepted_ids, closed_loop, error_counts
from bench.sagas import SagaOutcome, outcome, wait_for_sagas
from bench.stats import Summary, rate, summarize
from bench.target import Target

__all__ = ["ClosedLoopResult", "run_closed_loop"]


@dataclass(frozen=True)
class ClosedLoopResult:
    orders: int
    clients: int
    accepted: int
    errors: dict[str, int]
    send_seconds: float
    """First request sent to last answer received."""
    api: Summary | None
    sagas: SagaOutcome

    @property
    def accepted_per_s(self) -> float | None:
        return rate(self.accepted, self.send_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "clients": self.clients,
            "accepted": self.accepted,
            "errors": self.errors,
            "send_seconds": round(self.send_seconds, 3),
            "accepted_per_s": self.accepted_per_s,
            "api_latency": self.api.to_json() if self.api else None,
            "sagas": self.sagas.to_json(),
        }


async def run_closed_loop(
    target: Target,
    bodies: Bodies,
    *,
    orders: int,
    clients: int,
    saga_timeout: float,
    first_index: int = 0,
) -> ClosedLoopResult:
    """Send ``orders`` orders with ``clients`` clients; wait up to ``saga_timeout`` for sagas."""
    clock = Clock()
    began = clock.now()
    attempts = await closed_loop(
        target.order_url,
        bodies,
        clients=clients,
        clock=clock,
        first_index=first_index,
        count=orders,
    )
    ids = accepted_ids(attempts)
    rows = await wait_for_sagas(target.database_dsn("order"), ids, saga_timeout)
    return ClosedLoopResult(
        orders=orders,
        clients=clients,
        accepted=len(ids),
        errors=error_counts(attempts),
        send_seconds=max(a.finished for a in attempts) - began,
        api=summarize(a.latency_ms for a in attempts if a.accepted),
        sagas=outcome(rows, len(ids)),
    )
