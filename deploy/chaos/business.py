"""The injected business failures of a run, kept in place while instances die and return.

A service keeps its injected faults in memory, so an instance restarted after a kill has
none: every ``KEEP_S`` seconds ``BusinessFaults`` asks each instance for its faults and adds
back the ones missing. It also adds, every ``transient_every_s`` seconds, a transient fault
on one instance in turn that fails its next handler attempt: the record is retried and the
saga goes on. One attempt, not two: the next fault on that instance can be added the moment
one is used up (a fault waits, skipped by the rotation, while no records flow), and two
faults of two firings each failed a record's three attempts (the retry limit) in a smoke run
of 2026-12-07, which dead-lettered it and left its saga unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["RATES", "BusinessFaults"]

KEEP_S = 1.0
RATES: Mapping[str, tuple[str, float]] = {
    "payment": ("decline", 0.03),
    "inventory": ("out_of_stock", 0.02),
    "shipping": ("fail", 0.05),
}
"""Per service: the business fault each of its instances keeps, and the share it hits."""
TRANSIENT_FIRINGS = 1
"""Attempts each transient fault fails: two in a row must stay under the retry limit (3)."""


@dataclass
class BusinessFaults:
    """Keeps ``RATES`` on every instance of ``instances`` (service -> base URLs)."""

    instances: Mapping[str, Sequence[str]]
    admin_token: str
    transient_every_s: float = 5.0
    added: Counter[str] = field(default_factory=Counter)
    """Faults posted, by kind (a business fault again after each restart of its instance)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the faults until ``stop`` is set."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        every = [url for urls in self.instances.values() for url in urls]
        rotation = itertools.cycle(every)
        ticks_per_transient = max(1, round(self.transient_every_s / KEEP_S))
        async with httpx.AsyncClient(timeout=3, headers=headers) as http:
            for tick in itertools.count(1):
                for service, urls in self.instances.items():
                    if service in RATES:
                        kind, rate = RATES[service]
                        for url in urls:
                            await self._keep(http, url, {"kind": kind, "rate": rate})
                if tick % ticks_per_transient == 0:
                    spec = {"kind": "transient", "count": TRANSIENT_FIRINGS}
                    await self._keep(http, next(rotation), spec)
                try:
                    await asyncio.wait_for(stop.wait(), KEEP_S)
                    return
                except TimeoutError:
                    pass

    async def _keep(self, http: httpx.AsyncClient, url: str, spec: dict[str, Any]) -> None:
        """Post ``spec`` to ``url`` unless a fault of its kind is active there already."""
        try:
            active = (await http.get(f"{url}/faults")).json()
            if any(fault.get("kind") == spec["kind"] for fault in active):
                return
            (await http.post(f"{url}/faults", json=spec)).raise_for_status()
            self.added[spec["kind"]] += 1
        except (httpx.HTTPError, ValueError):
            pass  # the instance is down or restarting: the next round adds it

    async def clear(self) -> None:
        """Remove every fault from every instance (best effort: an instance may be down)."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        async with httpx.AsyncClient(timeout=5, headers=headers) as http:
            for urls in self.instances.values():
                for url in urls:
                    with contextlib.suppress(httpx.HTTPError):
                        await http.delete(f"{url}/faults")
