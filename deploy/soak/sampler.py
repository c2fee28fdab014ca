"""Every ``sample_s`` seconds, one sample of everything the verdict looks at.

A sample is a plain dict (it goes into the JSON report as it is): the seconds since the load
began, each process's memory and CPU, Redis's memory and keys, every table's rows (counted
for the tables named in ``counted``, estimated for the others) and bytes, the outbox
backlog, lag and dead letters, and the window's API and saga latency. A reading that fails
(a service restarting) is left out of that sample and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio

from bench.stats import summarize
from deploy.soak import probes
from deploy.soak.load import Load

__all__ = ["Sampler"]


@dataclass
class Sampler:
    dsns: Mapping[str, str]
    """Each service's database (asyncpg DSN)."""
    redis_url: str
    instance_urls: Sequence[str]
    state_dir: Path
    profile: str
    load: Load
    every_s: float
    counted: Sequence[str] = ()
    """Tables whose rows are counted, not estimated (those the verdict judges flat)."""
    samples: list[dict[str, Any]] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    _connections: dict[str, asyncpg.Connection] = field(default_factory=dict)

    async def run(self, began: float, stop: asyncio.Event) -> None:
        """Sample until ``stop`` is set, the first one ``every_s`` after ``began``."""
        store = redis.asyncio.Redis.from_url(self.redis_url)
        async with httpx.AsyncClient(timeout=5) as http:
            try:
                while True:
                    next_at = began + (len(self.samples) + 1) * self.every_s
                    try:
                        await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
                        return
                    except TimeoutError:
                        pass
                    self.samples.append(await self._sample(http, store, began))
            finally:
                await store.aclose()
                for connection in self._connections.values():
                    await connection.close()

    async def _connection(self, service: str) -> asyncpg.Connection:
        connection = self._connections.get(service)
        if connection is None or connection.is_closed():
            connection = await asyncpg.connect(self.dsns[service], timeout=10)
            self._connections[service] = connection
        return connection

    async def _read(self, what: str, reading: Any) -> Any:
        try:
            return await reading
        except Exception:  # a missed reading is counted, the soak goes on
            self.failures[what] += 1
            return None

    async def _sample(
        self, http: httpx.AsyncClient, store: redis.asyncio.Redis, began: float
    ) -> dict[str, Any]:
        t = time.monotonic() - began
        sample: dict[str, Any] = {"t_s": round(t, 1)}
        sample["processes"] = probes.process_readings(self.state_dir, self.profile)
        sample["redis"] = await self._read("redis", probes.redis_reading(store))
        try:
            connections = {s: await self._connection(s) for s in self.dsns}
        except Exception:
            self.failures["postgres"] += 1
            self._connections.clear()
            connections = {}
        if connections:
            sample["tables"] = await self._read(
                "tables", probes.table_sizes(connections, self.counted)
            )
            sample["outbox"] = await self._read("outbox", probes.outbox_backlog(connections))
            sample["sagas"] = await self._read(
                "sagas", probes.saga_latency(connections["order"], self.every_s)
            )
        sample["metrics"] = await self._read("metrics", probes.scrape(http, self.instance_urls))
        sample["api"] = self._api(t)
        return sample

    def _api(self, t: float) -> dict[str, Any]:
        answers = self.load.window(t - self.every_s, t)
        latencies = summarize(a.latency_s * 1000 for a in answers)
        return {
            "answers": len(answers),
            "codes": dict(Counter(str(a.status) for a in answers)),
            "p50_ms": latencies and round(latencies.p50, 1),
            "p99_ms": latencies and round(latencies.p99, 1),
            "max_ms": latencies and round(latencies.max, 1),
        }
