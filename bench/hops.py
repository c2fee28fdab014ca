"""Where a saga's time goes, hop by hop, from the services' own clocks.

Every record is timed by the services themselves (``shared.observability.stages``), from the
moment its outbox row was written (its Kafka timestamp) to each stage of its hop: the relay's
send and Kafka's acknowledgement (``sagakit_outbox_stage_seconds``), then, for each group
that consumes it, the fetch, the start of the transaction, the group's lock taken, the
commit and the offset commit (``sagakit_consumer_stage_seconds``). The benchmark reads every
instance's ``/metrics`` before and after a step and subtracts: what is left are that step's
records. Each stage's figures are the hop's latency up to that stage: means are exact (sums
over counts); percentiles are read from the histogram's buckets, interpolated within one,
as Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "CONSUMER_STAGES",
    "CRITICAL_PATH",
    "HAPPY_PATH",
    "RELAY_STAGES",
    "SEGMENTS",
    "STAGES",
    "Histogram",
    "Snapshot",
    "breakdown",
    "happy_path_segments",
    "happy_path_total",
    "histograms_in",
    "quantile",
    "read_snapshot",
    "since",
]

RELAY_FAMILY = "sagakit_outbox_stage_seconds"
CONSUMER_FAMILY = "sagakit_consumer_stage_seconds"
RELAY_STAGES = ("sent", "acknowledged")
CONSUMER_STAGES = ("fetched", "begun", "locked", "committed", "offset_committed")
STAGES = RELAY_STAGES + CONSUMER_STAGES

HAPPY_PATH: tuple[tuple[str, str], ...] = (
    ("order-created", "payment"),
    ("payment-processed", "inventory"),
    ("inventory-reserved", "shipping"),
    ("order-shipped", "order"),
)
"""The happy saga's hops in order: a topic (without prefix) and the group that moves the
saga on, named after its service (the order service's, not its timeline group)."""

_SCRAPE_TIMEOUT_S = 10.0

Key = tuple[str, str, str]
"""(topic, group, stage); the group is "" for the relay's stages."""


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound (seconds, the last one infinite), and the sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]
    total: float

    @property
    def count(self) -> float:
        return self.cumulative[-1] if self.cumulative else 0.0

    def minus(self, earlier: Histogram) -> Histogram:
        if earlier.bounds != self.bounds:
            raise ValueError("histograms of different buckets")
        return Histogram(
            self.bounds,
            tuple(a - b for a, b in zip(self.cumulative, earlier.cumulative, strict=True)),
            self.total - earlier.total,
        )

    def plus(self, other: Histogram) -> Histogram:
        if other.bounds != self.bounds:
            raise ValueError("histograms of different buckets")
        return Histogram(
            self.bounds,
            tuple(a + b for a, b in zip(self.cumulative, other.cumulative, strict=True)),
            self.total + other.total,
        )


Snapshot = dict[str, dict[Key, Histogram]]
"""Each instance's stage histograms, by the instance's name."""


def quantile(histogram: Histogram, q: float) -> float | None:
    """The ``q`` quantile (0-1) of ``histogram``, in seconds: linear within its bucket, the
    first bucket starting at 0; in the infinite bucket, the last finite bound (a floor)."""
    count = histogram.count
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(histogram.bounds, histogram.cumulative, strict=True):
        if cumulative >= rank and cumulative > below:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower


def histograms_in(text: str) -> dict[Key, Histogram]:
    """The stage histograms of one ``/metrics`` page, by (topic, group, stage)."""
    buckets: dict[Key, list[tuple[float, float]]] = {}
    sums: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (RELAY_FAMILY, CONSUMER_FAMILY):
            continue
        for sample in family.samples:
            labels = sample.labels
            key = (labels["topic"], labels.get("group", ""), labels["stage"])
            if sample.name.endswith("_bucket"):
                buckets.setdefault(key, []).append((float(labels["le"]), sample.value))
            elif sample.name.endswith("_sum"):
                sums[key] = sample.value
    found = {}
    for key, pairs in buckets.items():
        pairs.sort()
        bounds = tuple(bound for bound, _ in pairs)
        found[key] = Histogram(bounds, tuple(value for _, value in pairs), sums.get(key, 0.0))
    return found


async def _page(client: httpx.AsyncClient, url: str) -> str | None:
    try:
        response = await client.get(url, timeout=_SCRAPE_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError:
        return None  # an instance down (the outage) or gone: its records are left out
    return response.text


async def read_snapshot(urls: Mapping[str, str]) -> Snapshot:
    """The stage histograms of every instance whose ``/metrics`` answered."""
    async with httpx.AsyncClient() as client:
        pages = await asyncio.gather(*(_page(client, url) for url in urls.values()))
    return {name: histograms_in(page) for name, page in zip(urls, pages, strict=True) if page}


def since(before: Snapshot, after: Snapshot) -> dict[Key, Histogram]:
    """What each stage observed between two snapshots, all instances together. An instance
    missing from either, or restarted between them (a count went down), is left out."""
    total: dict[Key, Histogram] = {}
    for instance, now in after.items():
        earlier = before.get(instance)
        if earlier is None:
            continue
        diffs = {key: h.minus(earlier[key]) if key in earlier else h for key, h in now.items()}
        if any(c < 0 for h in diffs.values() for c in h.cumulative):
            continue
        for key, histogram in diffs.items():
            total[key] = total[key].plus(histogram) if key in total else histogram
    return total


def _stage(histogram: Histogram | None) -> dict[str, Any] | None:
    if histogram is None or histogram.count <= 0:
        return None
    p50, p99 = quantile(histogram, 0.5), quantile(histogram, 0.99)
    return {
        "count": int(histogram.count),
        "mean_ms": round(histogram.total / histogram.count * 1000, 2),
        "p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "p99_ms": None if p99 is None else round(p99 * 1000, 2),
    }


def _unprefixed(name: str, prefix: str) -> str:
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


def _happy_index(topic: str, group: str) -> int | None:
    # A service's group is named after it (the order service's timeline group is not).
    step = HAPPY_PATH.index((topic, group)) if (topic, group) in HAPPY_PATH else None
    return step


def breakdown(observed: Mapping[Key, Histogram], prefix: str = "") -> list[dict[str, Any]]:
    """One entry per hop (a topic and a group consuming it) with records in ``observed``:
    each stage's count, mean, p50 and p99 in milliseconds since the outbox row was written.
    The happy saga's hops first, in their order, then the others by topic and group."""
    consumed = sorted({(topic, group) for topic, group, _ in observed if group})
    hops = []
    for topic, group in consumed:
        name, group_name = _unprefixed(topic, prefix), _unprefixed(group, prefix)
        stages = {stage: _stage(observed.get((topic, "", stage))) for stage in RELAY_STAGES}
        stages |= {stage: _stage(observed.get((topic, group, stage))) for stage in CONSUMER_STAGES}
        hops.append(
            {
                "topic": name,
                "group": group_name,
                "happy_path_step": _happy_index(name, group_name),
                "stages": stages,
            }
        )

    def order(hop: dict[str, Any]) -> tuple[int, str, str]:
        step = hop["happy_path_step"]
        return (len(HAPPY_PATH) if step is None else step, hop["topic"], hop["group"])

    return sorted(hops, key=order)


CRITICAL_PATH = ("sent", "fetched", "begun", "locked", "committed")
"""The stages a saga waits for, in order: the acknowledgement runs beside the fetch (a
consumer may read a record before the relay hears of its acknowledgement), and the offset
commit after the next hop has begun."""

SEGMENTS = {
    "sent": "written to sent",
    "fetched": "sent to fetched",
    "begun": "fetched to begun",
    "locked": "begun to locked",
    "committed": "locked to committed",
}
"""Each stage of the critical path by the segment that ends there."""


def happy_path_segments(hops: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """Where the happy saga's time goes: each segment of the critical path (``SEGMENTS``),
    its mean (ms) added up over the happy hops; None unless every happy hop has every stage.
    The segments add up to the hops' mean latencies to their commit, exactly."""
    totals = dict.fromkeys(CRITICAL_PATH, 0.0)
    steps = 0
    for hop in hops:
        if hop["happy_path_step"] is None:
            continue
        reached = [hop["stages"].get(stage) for stage in CRITICAL_PATH]
        if not all(reached):
            return None
        steps += 1
        previous = 0.0
        for stage, figures in zip(CRITICAL_PATH, reached, strict=True):
            mean = float(figures["mean_ms"])
            totals[stage] += mean - previous
            previous = mean
    if steps != len(HAPPY_PATH):
        return None
    return {stage: round(total, 2) for stage, total in totals.items()}


def happy_path_total(hops: Sequence[Mapping[str, Any]]) -> float | None:
    """The happy hops' mean latencies to their commit, added up (ms): what the saga's mean
    latency is made of, beyond the order API's own transaction."""
    segments = happy_path_segments(hops)
    return None if segments is None else round(sum(segments.values()), 2)
