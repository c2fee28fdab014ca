"""How long after its event was committed a record reached each stage of its hop.

A hop of a saga is one record's way from the transaction that wrote its outbox row to the
offset commit of the group that handled it: the relay sends it and Kafka acknowledges it
(``shared.publishing.outbox_sending``), a consumer fetches it, begins a transaction, takes
its group's lock, commits, and commits the offset (``shared.consuming``). Every stage is
timed from the same origin, the record's Kafka timestamp, which the relay sets to the moment
its outbox row was written (at the unit of work's commit). So each stage's distribution is
the hop's latency up to that stage, measured where it happens, with no sums of averages.

Observed for every record, so the hot path pays little: one ``time.time()`` per batch of
records (a poll, a transaction, an offset commit), then a bisect and two additions per
record, into plain lists. The Prometheus histogram family is built from those lists at
scrape time (``family``), as the counters of ``shared.observability.metrics`` are. The
benchmark reads it from each service's ``/metrics`` before and after a step and subtracts.

Both ends read the wall clock (the relay's origin is PostgreSQL's ``clock_timestamp()``):
on one machine they agree; across machines the figures include the clocks' offset.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client.core import HistogramMetricFamily

__all__ = ["STAGE_BUCKETS", "StageClock"]

STAGE_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
    10.0,
)
"""Seconds: a hop takes milliseconds when idle and hundreds of them under load, so the
buckets are fine enough there for percentiles read from them to mean something."""


class _Series:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(STAGE_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class StageClock:
    """A histogram of seconds since each record's origin, per label values (the stage last)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = tuple(labels)
        self._series: dict[tuple[str, ...], _Series] = {}

    def since(self, labels: tuple[str, ...], origins_ms: Iterable[int]) -> None:
        """Observe, now, the time since each of ``origins_ms`` (milliseconds since the epoch,
        as Kafka timestamps are)."""
        self.observe(labels, time.time(), origins_ms)

    def observe(self, labels: tuple[str, ...], now: float, origins_ms: Iterable[int]) -> None:
        """Observe ``now`` (seconds since the epoch) minus each of ``origins_ms``."""
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = _Series()
        counts, total, now_ms = series.counts, 0.0, now * 1000
        for origin in origins_ms:
            seconds = (now_ms - origin) / 1000
            counts[bisect_left(STAGE_BUCKETS, seconds)] += 1
            total += seconds
        series.total += total

    def family(self) -> HistogramMetricFamily:
        """Every series as one Prometheus histogram family (cumulative buckets)."""
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, series in self._series.items():
            buckets, running = [], 0
            for bound, count in zip((*STAGE_BUCKETS, float("inf")), series.counts, strict=True):
                running += count
                buckets.append((_bound(bound), running))
            family.add_metric(list(labels), buckets, series.total)
        return family


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
