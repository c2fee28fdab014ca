"""The synchronous chain under the closed loop: orders per second and latency with the same
number of clients as the event-driven system's closed loop. Its answer comes once the whole
chain is done, so its API latency is its saga latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.load import Bodies, Clock, closed_loop, error_counts
from bench.stats import Summary, rate, summarize

__all__ = ["SyncResult", "run_sync_closed_loop"]


@dataclass(frozen=True)
class SyncResult:
    clients: int
    seconds: float
    completed: int
    errors: dict[str, int]
    latency: Summary | None

    @property
    def orders_per_s(self) -> float | None:
        return rate(self.completed, self.seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "seconds": round(self.seconds, 3),
            "completed": self.completed,
            "errors": self.errors,
            "orders_per_s": self.orders_per_s,
            "latency": self.latency.to_json() if self.latency else None,
        }


async def run_sync_closed_loop(
    order_url: str,
    bodies: Bodies,
    *,
    clients: int,
    seconds: float,
    warmup_orders: int,
    first_index: int,
) -> SyncResult:
    """``clients`` clients for ``seconds``, after ``warmup_orders`` orders that are not timed."""
    clock = Clock()
    if warmup_orders:
        await closed_loop(
            order_url,
            bodies,
            clients=clients,
            clock=clock,
            first_index=first_index,
            count=warmup_orders,
        )
    began = clock.now()
    attempts = await closed_loop(
        order_url, bodies, clients=clients, clock=clock, first_index=first_index, seconds=seconds
    )
    completed = [a for a in attempts if a.accepted]
    return SyncResult(
        clients=clients,
        seconds=max((a.finished for a in attempts), default=began) - began,
        completed=len(completed),
        errors=error_counts(attempts),
        latency=summarize(a.latency_ms for a in completed),
    )
