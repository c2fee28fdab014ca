"""The soak's verdict on growth, from its samples: what must stay flat, what may grow and by
how much per saga, and whether latency drifted.

Pure functions of the samples (unit-tested without a stack). The first ``warmup_fraction``
of the run is left out: pools fill, caches warm, the first purges have nothing to delete
yet. Of the rest, the last third's mean is compared with the middle third's: a bounded series
(a process's memory, Redis, the platform's own tables, which retention keeps at a window's
worth of rows) may grow by at most ``flat_tolerance`` plus a small absolute slack (a table of
a few hundred rows moves by more than 10% from one sample to the next). The business tables
and, without a retention window, the timeline grow with every saga: reported in bytes per
saga, not judged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import fmean
from typing import Any

__all__ = [
    "BOUNDED_TABLES",
    "Check",
    "bounded_tables",
    "latency_windows",
    "series",
    "thirds",
    "verdict",
]

BOUNDED_TABLES = ("sagakit_inbox", "sagakit_outbox")
"""The platform's own tables: retention bounds them (the timeline too, when it has one)."""
ROWS_SLACK = 2000
MB_SLACK = 2.0

Sample = Mapping[str, Any]


def bounded_tables(*, timeline_bounded: bool) -> tuple[str, ...]:
    """The tables judged flat: the platform's, and the timeline when it has a retention."""
    return (*BOUNDED_TABLES, *(("timeline",) if timeline_bounded else ()))


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def series(samples: Sequence[Sample], pick: Callable[[Sample], Any]) -> list[float]:
    """The values ``pick`` finds in each sample (a sample where the reading failed has none)."""
    values = []
    for sample in samples:
        try:
            value = pick(sample)
        except (KeyError, TypeError):
            continue
        if isinstance(value, int | float):
            values.append(float(value))
    return values


def thirds(samples: Sequence[Sample], warmup_fraction: float) -> tuple[list[Sample], list[Sample]]:
    """The middle and the last third of the samples after the warm-up (by time)."""
    if not samples:
        return [], []
    end = samples[-1]["t_s"]
    start = end * warmup_fraction
    step = (end - start) / 2
    middle = [s for s in samples if start <= s["t_s"] < start + step]
    last = [s for s in samples if s["t_s"] >= start + step]
    return middle, last


def latency_windows(
    began: datetime, ended: datetime, warmup_fraction: float
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """The middle and the last third of the run by the clock, as ``thirds`` splits samples.

    The saga p99 drift is judged on the sagas accepted in each (tens of thousands at 100/s):
    a five-minute window's p99 moved between 1.1 and 2.9 s from one window to the next on
    the 2-core machine with no trend, and the first minutes (a cold stack) are warm-up.
    """
    start = began + (ended - began) * warmup_fraction
    step = (ended - start) / 2
    return (start, start + step), (start + step, ended)


def _flat(
    name: str,
    middle: list[float],
    last: list[float],
    tolerance: float,
    slack: float,
    unit: str,
) -> Check:
    if not middle or not last:
        return Check(name, False, "no readings to compare")
    before, after = fmean(middle), fmean(last)
    bound = before * (1 + tolerance) + slack
    change = f"{(after / before - 1) * 100:+.1f}%" if before else "from 0"
    return Check(
        name, after <= bound, f"{before:.1f} -> {after:.1f} {unit} ({change}; bound {bound:.1f})"
    )


def _names(samples: Iterable[Sample], key: str) -> list[str]:
    return sorted({name for s in samples for name in (s.get(key) or {})})


def flat_checks(
    samples: Sequence[Sample],
    *,
    warmup_fraction: float,
    tolerance: float,
    bounded_tables: Iterable[str],
) -> list[Check]:
    """Every bounded series: each process's memory, Redis's memory and keys, the bounded
    tables' rows and bytes in every service."""
    middle, last = thirds(samples, warmup_fraction)
    checks = []

    def both(pick: Callable[[Sample], Any]) -> tuple[list[float], list[float]]:
        return series(middle, pick), series(last, pick)

    def reading(*path: str) -> Callable[[Sample], Any]:
        def pick(sample: Sample) -> Any:
            value: Any = sample
            for step in path:
                value = value[step]
            return value

        return pick

    for process in _names(samples, "processes"):
        picked = both(reading("processes", process, "rss_mb"))
        checks.append(_flat(f"memory of {process}", *picked, tolerance, MB_SLACK, "MB"))
    checks.append(
        _flat("Redis memory", *both(lambda s: s["redis"]["used_mb"]), tolerance, MB_SLACK, "MB")
    )
    checks.append(
        _flat("Redis keys", *both(lambda s: s["redis"]["keys"]), tolerance, ROWS_SLACK, "keys")
    )
    wanted = set(bounded_tables)
    for table in _names(samples, "tables"):
        if table.split(".", 1)[1] not in wanted:
            continue
        rows = both(reading("tables", table, "rows"))
        checks.append(_flat(f"rows of {table}", *rows, tolerance, ROWS_SLACK, "rows"))
        size = both(reading("tables", table, "mb"))
        checks.append(_flat(f"size of {table}", *size, tolerance, MB_SLACK, "MB"))
    return checks


def growth_per_saga(samples: Sequence[Sample], warmup_fraction: float) -> dict[str, float]:
    """Bytes each unbounded table grew by per saga accepted, from the warm-up's end to the end
    (the orders table's rows count the sagas)."""
    middle, last = thirds(samples, warmup_fraction)
    if not middle or not last:
        return {}
    first, final = middle[0].get("tables") or {}, last[-1].get("tables") or {}
    sagas = final.get("order.orders", {}).get("rows", 0) - first.get("order.orders", {}).get(
        "rows", 0
    )
    if sagas <= 0:
        return {}
    return {
        table: round((final[table]["mb"] - first[table]["mb"]) * 1024 * 1024 / sagas)
        for table in sorted(final)
        if table in first and table.split(".", 1)[1] not in BOUNDED_TABLES
    }


def publish_ms(samples: Sequence[Sample]) -> float | None:
    """The relay's mean publish latency over ``samples`` (ms per row), from the cumulative
    counters of the instances (a restarted instance's reset is left out)."""
    points = [
        (s["metrics"]["published"], s["metrics"]["publish_s"]) for s in samples if s.get("metrics")
    ]
    if len(points) < 2:
        return None
    rows, seconds = points[-1][0] - points[0][0], points[-1][1] - points[0][1]
    return round(seconds / rows * 1000, 2) if rows > 0 and seconds >= 0 else None


def verdict(
    samples: Sequence[Sample],
    *,
    warmup_fraction: float,
    tolerance: float,
    p99_middle_ms: float | None,
    p99_last_ms: float | None,
    p99_limit: float,
    timeline_bounded: bool,
    violations: int,
    dead_letters_beyond_copies: int,
    behind_s: float,
    given_up: int,
    behind_limit_s: float,
) -> list[Check]:
    """Every check of the run, in the order the table shows them.

    ``behind_s``: how far behind its schedule the load fell at most; ``given_up``: orders
    never accepted. A run past either bound did not hold its rate, so what it measured was
    a lighter load than asked for (and an overloaded system besides).
    """
    bounded = bounded_tables(timeline_bounded=timeline_bounded)
    checks = [
        Check(
            "load kept its rate",
            behind_s <= behind_limit_s and given_up == 0,
            f"at most {behind_s:.0f} s behind schedule (bound {behind_limit_s:g} s), "
            f"{given_up} order(s) given up",
        ),
        Check("verify", violations == 0, f"{violations} violation(s)"),
        Check(
            "replays add one dead letter per copy at most",
            dead_letters_beyond_copies == 0,
            f"{dead_letters_beyond_copies} dead letter(s) beyond the copies replayed",
        ),
    ]
    if p99_middle_ms is None or p99_last_ms is None:
        checks.append(Check("saga p99 drift", False, "no completed sagas in a third"))
    else:
        ratio = p99_last_ms / p99_middle_ms
        checks.append(
            Check(
                "saga p99 drift",
                ratio <= p99_limit,
                f"middle third {p99_middle_ms:.0f} ms, last {p99_last_ms:.0f} ms: "
                f"x{ratio:.2f} (limit x{p99_limit:g})",
            )
        )
    middle, last = thirds(samples, warmup_fraction)
    before, after = publish_ms(middle), publish_ms(last)
    if before is not None and after is not None:
        checks.append(
            Check(
                "relay publish latency while purging",
                after <= before * p99_limit + 1.0,
                f"{before:.2f} -> {after:.2f} ms per row",
            )
        )
    checks += flat_checks(
        samples, warmup_fraction=warmup_fraction, tolerance=tolerance, bounded_tables=bounded
    )
    return checks
