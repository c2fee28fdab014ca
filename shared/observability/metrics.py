"""Prometheus metrics: the families components report, merged and rendered per service.

Counts stay where components already keep them (``ConsumerStats``, ``RelayStats``): the hot
path adds to an int, and the families are built from those ints at scrape time, so a scrape
reads them and nothing on the hot path calls a metrics library. Histograms are
``prometheus_client`` objects a component owns, created unregistered (``histogram``) so that
several services in one process (tests) never share one; each is observed once per
transaction, round or request, never per record.

A service's ``/metrics`` gathers every component's families (some need a query: the outbox
backlog, the dead-letter topics' sizes, the consumers' lag), merges families of one name
(two consumer groups report the same metrics), adds the ``service`` and ``instance`` labels
to every sample, and renders them with ``prometheus_client``. Its floats are printed with
``repr``, so a counter past a million keeps every digit (``1.0000001e+07``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "DURATION_BUCKETS",
    "Metric",
    "counter",
    "gauge",
    "histogram",
    "render",
]

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: a handler or a publish takes milliseconds, a retried or stuck one seconds."""


def counter(
    name: str,
    documentation: str,
    labels: Sequence[str],
    values: Mapping[tuple[str, ...], float],
) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``) with one sample per label values."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label_values, value in values.items():
        family.add_metric(label_values, value)
    return family


def gauge(
    name: str,
    documentation: str,
    labels: Sequence[str],
    values: Mapping[tuple[str, ...], float],
) -> GaugeMetricFamily:
    """A gauge family with one sample per label values."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values.items():
        family.add_metric(label_values, value)
    return family


def histogram(name: str, documentation: str, labels: Sequence[str] = ()) -> Histogram:
    """A histogram of seconds that belongs to no registry: its owner reports it."""
    return Histogram(
        name, documentation, labelnames=labels, buckets=DURATION_BUCKETS, registry=None
    )


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merged(families: Iterable[Metric], labels: Mapping[str, str]) -> list[Metric]:
    """One family per name, each sample with ``labels`` added (its own win a clash)."""
    by_name: dict[str, Metric] = {}
    for family in families:
        into = by_name.get(family.name)
        if into is None:
            into = by_name[family.name] = Metric(family.name, family.documentation, family.type)
        elif into.type != family.type:
            raise ValueError(f"metric {family.name} reported as {into.type} and {family.type}")
        into.samples.extend(
            sample._replace(labels={**labels, **sample.labels}) for sample in family.samples
        )
    return list(by_name.values())


def render(
    families: Iterable[Metric],
    labels: Mapping[str, str],
    registry: CollectorRegistry | None = None,
) -> bytes:
    """The Prometheus text format of ``families`` and ``registry``'s, with ``labels`` added."""
    everything = [*families, *(registry.collect() if registry is not None else ())]
    return generate_latest(_Families(merged(everything, labels)))
