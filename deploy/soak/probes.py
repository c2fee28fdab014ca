"""What the soak reads of a running system, each a small function of one source.

Processes from ``/proc`` (resident memory and CPU seconds of every service instance, Kafka,
Redis, and PostgreSQL's processes summed by their proportional share, since its shared
buffers are mapped by every backend), Redis from ``INFO``, tables from PostgreSQL's own
statistics (live rows and bytes on disk, indexes included; the rows of the tables retention
bounds counted exactly), the outbox's backlog and the sagas' latency with one query each,
and lag, dead letters and the relay's publish latency from the instances' ``/metrics``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import asyncpg
import httpx
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from bench.cpu import pid_in, process_seconds
from deploy.localstack.declared import service_names
from deploy.localstack.supervisor import read_status
from shared.storage.migrations import PLATFORM_VERSION_TABLE

__all__ = [
    "outbox_backlog",
    "process_readings",
    "redis_reading",
    "saga_latency",
    "scrape",
    "table_sizes",
]

MB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _pss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _postgres_pids(cluster: str) -> list[int]:
    """The processes of the Debian cluster ``cluster``: the postmaster names its folder
    (``-D .../15/<cluster>``), every child its title (``postgres: 15/<cluster>: ...``)."""
    named = re.compile(rf"/{re.escape(cluster)}(?=[:\s/]|$)")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "postgres" in cmdline and named.search(cmdline):
            pids.append(int(entry.name))
    return pids


def process_readings(state_dir: Path, profile: str) -> dict[str, dict[str, float]]:
    """Per process of the stack: ``rss_mb`` and ``cpu_s`` (since it started)."""
    pids: dict[str, int] = {}
    services_run = set(service_names())
    for instance in read_status(state_dir / "services"):
        # A companion beside the services (the notification receiver, which keeps what it
        # took in memory) is no part of the system whose growth the soak judges.
        if instance.get("module") not in services_run:
            continue
        if isinstance(instance.get("pid"), int):
            pids[str(instance["name"])] = int(instance["pid"])  # type: ignore[call-overload]
    for name in ("kafka", "redis"):
        if (pid := pid_in(state_dir / name / f"{name}.pid")) is not None:
            pids[name] = pid
    readings: dict[str, dict[str, float]] = {}
    for name, pid in pids.items():
        rss, cpu = _status_kib(pid, "VmRSS"), process_seconds(pid)
        if rss is not None and cpu is not None:
            readings[name] = {"rss_mb": round(rss / 1024, 1), "cpu_s": round(cpu, 2)}
    postgres = _postgres_pids(f"sagakit-{profile}")
    if postgres:
        pss = sum(_pss_kib(pid) or 0 for pid in postgres)
        cpu = sum(process_seconds(pid) or 0.0 for pid in postgres)
        readings["postgres"] = {"rss_mb": round(pss / 1024, 1), "cpu_s": round(cpu, 2)}
    return readings


async def redis_reading(client: redis.asyncio.Redis) -> dict[str, float]:
    """Redis's memory in use and how many keys it holds."""
    memory = await client.info("memory")
    keys = await client.dbsize()
    return {"used_mb": round(int(memory["used_memory"]) / MB, 2), "keys": int(keys)}


_TABLES = (
    "SELECT relname, quote_ident(relname), n_live_tup, pg_total_relation_size(relid) "
    "FROM pg_stat_user_tables "
    "WHERE schemaname = 'public' "
    f"AND relname NOT IN ('alembic_version', '{PLATFORM_VERSION_TABLE}')"
)


async def table_sizes(
    connections: Mapping[str, asyncpg.Connection], counted: Iterable[str] = ()
) -> dict[str, dict[str, float]]:
    """``service.table``: live rows and megabytes on disk.

    The rows of the tables named in ``counted`` are counted (``count(*)``), the others'
    are PostgreSQL's estimate. The verdict judges the counted ones flat, and the estimate
    is not fit for that: autovacuum replaces it with an extrapolation from the pages it
    scanned, so a table that retention keeps at a steady size could read 10-20% more or
    less from one vacuum to the next. They are the small tables (a retention window's
    rows), so counting them costs little; the business tables grow without bound and
    keep the estimate.
    """
    wanted = set(counted)
    sizes: dict[str, dict[str, float]] = {}
    for service, connection in connections.items():
        for name, quoted, rows, size in await connection.fetch(_TABLES):
            if name in wanted:
                rows = await connection.fetchval(f"SELECT count(*) FROM {quoted}")
            sizes[f"{service}.{name}"] = {"rows": int(rows), "mb": round(size / MB, 2)}
    return sizes


_BACKLOG = (
    "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 "
    "FROM sagakit_outbox WHERE sent_at IS NULL"
)


async def outbox_backlog(connections: Mapping[str, asyncpg.Connection]) -> dict[str, float]:
    """Unsent outbox rows of all services, and the age of the oldest (seconds)."""
    unsent, oldest = 0, 0.0
    for connection in connections.values():
        count, age = await connection.fetchrow(_BACKLOG)
        unsent, oldest = unsent + int(count), max(oldest, float(age))
    return {"unsent": unsent, "oldest_s": round(oldest, 2)}


_SAGAS = (
    "SELECT count(*), "
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)), "
    "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) "
    "FROM orders WHERE status = 'COMPLETED' AND updated_at > now() - $1::float8 * interval '1 s'"
)


async def saga_latency(order: asyncpg.Connection, window_s: float) -> dict[str, float | None]:
    """Sagas completed in the last ``window_s`` seconds, with their p50 and p99 (ms) from the
    order's acceptance to its completion, by the order service's own timestamps."""
    count, p50, p99 = await order.fetchrow(_SAGAS, window_s)
    return {
        "completed": int(count),
        "p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "p99_ms": None if p99 is None else round(p99 * 1000, 1),
    }


async def scrape(http: httpx.AsyncClient, urls: Iterable[str]) -> dict[str, float]:
    """From every instance's ``/metrics``: consumer lag (records, all groups), records in the
    dead-letter topics, and the relay's publish count and seconds (cumulative)."""
    lag: dict[tuple[str, ...], float] = {}
    dlq: dict[str, float] = {}
    published, publish_s = 0.0, 0.0

    async def fetch(url: str) -> str:
        try:
            response = await http.get(f"{url}/metrics")
        except httpx.HTTPError:
            return ""
        return response.text if response.status_code == 200 else ""

    for text in await asyncio.gather(*(fetch(url) for url in urls)):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "sagakit_consumer_lag_records":
                    key = (
                        labels.get("group", ""),
                        labels.get("topic", ""),
                        labels.get("partition", ""),
                    )
                    # A partition another instance held before a rebalance may still show
                    # there: one value per partition, the largest.
                    lag[key] = max(lag.get(key, 0.0), sample.value)
                elif sample.name == "sagakit_dlq_records":
                    topic = labels.get("topic", "")
                    dlq[topic] = max(dlq.get(topic, 0.0), sample.value)
                elif sample.name == "sagakit_outbox_publish_duration_seconds_count":
                    published += sample.value
                elif sample.name == "sagakit_outbox_publish_duration_seconds_sum":
                    publish_s += sample.value
    return {
        "lag": sum(lag.values()),
        "dlq_records": sum(dlq.values()),
        "published": published,
        "publish_s": publish_s,
    }
