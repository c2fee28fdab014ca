"""Reading a service's ``/metrics`` as Prometheus does: with prometheus-client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["Scrape", "scrape"]


class Scrape:
    """The samples of one scrape, by sample name (``x_total``, ``x_bucket``...)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[str, list[Sample]] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):  # raises on invalid text
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append(sample)

    def series(self, name: str, **labels: str) -> list[Sample]:
        """The samples of ``name`` whose labels include ``labels``."""
        return [
            sample
            for sample in self.samples.get(name, [])
            if all(sample.labels.get(key) == value for key, value in labels.items())
        ]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
        return sum(sample.value for sample in self.series(name, **labels))


async def scrape(http: httpx.AsyncClient, url: str) -> Scrape:
    """One instance's ``/metrics``, parsed."""
    response = await http.get(f"{url}/metrics")
    response.raise_for_status()
    return Scrape(response.text)
