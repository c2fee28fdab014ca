"""Latency distributions: the percentiles a table shows and the curve a plot draws."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CURVE_POINTS", "Summary", "percentile", "rate", "summarize"]

# Where the plot samples each distribution: every percent, then the tail in finer steps.
CURVE_POINTS: tuple[float, ...] = (*range(1, 100), 99.5, 99.9)


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, interpolated between neighbours."""
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rate(count: int, seconds: float) -> float | None:
    """Events per second, or None when nothing was timed (a rate over no time means nothing)."""
    return count / seconds if seconds > 0 and count else None


@dataclass(frozen=True)
class Summary:
    """One latency distribution, in milliseconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float
    curve: tuple[tuple[float, float], ...]
    """(percentile, value) pairs for the plot, so it can be drawn again from the JSON."""

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "mean_ms": round(self.mean, 3),
            "p50_ms": round(self.p50, 3),
            "p95_ms": round(self.p95, 3),
            "p99_ms": round(self.p99, 3),
            "max_ms": round(self.max, 3),
            "curve_ms": [[q, round(value, 3)] for q, value in self.curve],
        }


def summarize(milliseconds: Iterable[float]) -> Summary | None:
    """The distribution of ``milliseconds``; None when there is none to describe."""
    ordered = sorted(milliseconds)
    if not ordered:
        return None
    return Summary(
        count=len(ordered),
        mean=sum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        curve=tuple((q, percentile(ordered, q)) for q in CURVE_POINTS),
    )
