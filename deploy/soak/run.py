"""One soak run: the stack up with its retention windows compressed, orders offered steadily
for the whole run while every series is sampled and poison records are replayed, then
``verify`` and the verdict on growth.

Four things happen at once while the orders are offered (``load``): the business faults of
``make chaos`` are kept on every instance (declines, failed reservations and shipments, a
transient error now and then), the sampler reads everything every ``sample_s`` seconds, and
poison records are produced and their dead letters replayed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from deploy import localstack
from deploy.chaos.business import BusinessFaults
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.run import instances_by_service
from deploy.chaos.verify import verify
from deploy.chaos.workload import Workload
from deploy.demo.client import SagaClient
from deploy.localstack.profiles import PROFILES
from deploy.soak.config import SoakConfig
from deploy.soak.load import Load, offer_orders
from deploy.soak.poison import PoisonReplays
from deploy.soak.sampler import Sampler
from deploy.soak.verdict import bounded_tables, growth_per_saga, latency_windows, verdict
from shared.storage.migrations import PLATFORM_VERSION_TABLE

__all__ = ["run_soak", "soak"]

SCHEMA = 2
"""2: saga_p99_ms compares the middle and the last third (1: the first and the last 5 minutes)."""

_P99 = (
    "SELECT percentile_cont(0.99) WITHIN GROUP "
    "(ORDER BY extract(epoch FROM updated_at - created_at)) * 1000 FROM orders "
    "WHERE status = 'COMPLETED' AND created_at >= $1 AND created_at < $2"
)


SOAK_PROFILES = ("soak", "soak-test")
TIMELINE_BOUNDED = True
"""The soak gives the timeline a retention window (``SoakConfig``), so it is judged flat."""
_USER_TABLES = (
    "SELECT quote_ident(tablename) FROM pg_tables "
    "WHERE schemaname = 'public' "
    f"AND tablename NOT IN ('alembic_version', '{PLATFORM_VERSION_TABLE}')"
)


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


async def _saga_p99(dsn: str, since: datetime, until: datetime) -> float | None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        value = await connection.fetchval(_P99, since, until)
    finally:
        await connection.close()
    return None if value is None else float(value)


async def _database_now(dsn: str) -> datetime:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        moment: datetime = await connection.fetchval("SELECT now()")
        return moment
    finally:
        await connection.close()


async def run_soak(config: SoakConfig, endpoints: Endpoints) -> dict[str, Any]:
    """Soak the running system ``endpoints`` names; the report as a JSON-ready dict."""
    run_id = f"soak{uuid.uuid4().hex[:6]}"
    started_at = datetime.now(UTC)
    began_all = time.monotonic()
    errors: list[str] = []
    workload = Workload(run_id, config.orders, config.seed)
    manifest = workload.manifest()
    urls = endpoints.instance_urls
    say(f"soak {run_id}: {config.orders} orders at {config.rate:g}/s for {config.minutes:g} min")
    async with SagaClient(endpoints.urls) as client:
        await workload.provision(client, manifest)
    keeper = BusinessFaults(await instances_by_service(urls), endpoints.urls.admin_token)
    load = Load()
    sampler = Sampler(
        dsns={s: endpoints.database_dsn(s) for s in endpoints.services},
        redis_url=endpoints.env["SAGAKIT_REDIS_URL"],
        instance_urls=urls,
        state_dir=config.env_file.parent,
        profile=config.profile,
        load=load,
        every_s=config.sample_s,
        counted=bounded_tables(timeline_bounded=TIMELINE_BOUNDED),
    )
    poison = PoisonReplays(
        {"bootstrap_servers": endpoints.env["SAGAKIT_KAFKA_BOOTSTRAP"]},
        run_id,
        config.replay_every_s,
    )
    order_dsn = endpoints.database_dsn("order")
    db_began = await _database_now(order_dsn)
    stop = asyncio.Event()
    began = time.monotonic()
    side = [
        asyncio.create_task(sampler.run(began, stop)),
        asyncio.create_task(poison.run(stop)),
    ]
    if config.business_faults:
        side.append(asyncio.create_task(keeper.run(stop)))
    try:
        await offer_orders(
            endpoints.urls.order,
            workload.iter_bodies(),
            key_prefix=run_id,
            rate=config.rate,
            concurrency=config.concurrency,
            give_up_s=config.give_up_s,
            load=load,
        )
    finally:
        stop.set()
        for outcome in await asyncio.gather(*side, return_exceptions=True):
            if isinstance(outcome, BaseException):
                errors.append("".join(traceback.format_exception_only(outcome)).strip())
        if config.business_faults:
            await keeper.clear()
    db_ended = await _database_now(order_dsn)
    say(f"offered in {load.seconds:.0f} s; {load.accepted} accepted; verifying")
    report = await verify(endpoints, manifest, config.settle_timeout_s)
    await poison.count_final()
    middle, last = latency_windows(db_began, db_ended, config.warmup_fraction)
    p99_middle = await _saga_p99(order_dsn, *middle)
    p99_last = await _saga_p99(order_dsn, *last)
    checks = verdict(
        sampler.samples,
        warmup_fraction=config.warmup_fraction,
        tolerance=config.flat_tolerance,
        p99_middle_ms=p99_middle,
        p99_last_ms=p99_last,
        p99_limit=config.p99_drift_limit,
        timeline_bounded=TIMELINE_BOUNDED,
        violations=report.violations,
        dead_letters_beyond_copies=poison.excess(),
        behind_s=load.backlog_max / config.rate,
        given_up=sum(load.given_up.values()),
        behind_limit_s=config.behind_limit_s,
    )
    codes: dict[str, int] = {}
    for answer in load.answers:
        codes[str(answer.status)] = codes.get(str(answer.status), 0) + 1
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "started_at": started_at.isoformat(),
        "elapsed_s": round(time.monotonic() - began_all, 1),
        "config": config.model_dump(mode="json") | {"services": config.service_settings()},
        "orders": config.orders,
        "load": {
            "accepted": load.accepted,
            "given_up": load.given_up,
            "codes": codes,
            "backlog_max": load.backlog_max,
            "seconds": round(load.seconds, 1),
        },
        "verify": report.to_json(),
        "dead_letters": poison.summary(),
        "saga_p99_ms": {
            "window_s": round((last[1] - last[0]).total_seconds()),
            "middle": p99_middle,
            "last": p99_last,
        },
        "growth_bytes_per_saga": growth_per_saga(sampler.samples, config.warmup_fraction),
        "sampling_failures": dict(sampler.failures),
        "checks": [check.to_json() for check in checks],
        "ok": all(check.ok for check in checks) and not errors,
        "errors": errors,
        "samples": sampler.samples,
    }


def _fresh_broker_and_redis(profile: str) -> None:
    """Every run starts from an empty broker and Redis: an earlier run's backlog (a run
    stopped half-way leaves thousands of unread events) would be this run's load. Only the
    soak profiles' own folders, and only when their stack is not running."""
    if profile not in SOAK_PROFILES:
        raise ValueError(f"a soak runs on {' or '.join(SOAK_PROFILES)}, not {profile!r}")
    if any(row.pid for row in localstack.status(profile)):
        return
    state_dir = PROFILES[profile].state_dir
    for part in ("kafka", "redis"):
        shutil.rmtree(state_dir / part, ignore_errors=True)


async def _empty_tables(endpoints: Endpoints) -> None:
    """The services' tables emptied (the schema kept), so each run meets the same sizes."""
    for service in endpoints.services:
        connection = await asyncpg.connect(endpoints.database_dsn(service), timeout=10)
        try:
            tables = await connection.fetch(_USER_TABLES)
            if tables:
                names = ", ".join(row[0] for row in tables)
                await connection.execute(f"TRUNCATE {names}")
        finally:
            await connection.close()


def soak(config: SoakConfig) -> dict[str, Any]:
    """Start the run's stack with the compressed windows, soak it, stop it whatever happens."""
    # The services inherit this process's environment at the supervisor's start; it is put
    # back after, so a caller (the test session) keeps its own.
    saved = {name: os.environ.get(name) for name in config.service_settings()}
    os.environ.update(config.service_settings())
    try:
        _fresh_broker_and_redis(config.profile)
        # An empty environ: a shell's SAGAKIT_* must not send the soak stack to servers of
        # yours.
        localstack.up(config.profile, {})
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        endpoints = Endpoints.from_env_file(config.env_file)
        asyncio.run(_empty_tables(endpoints))
        return asyncio.run(run_soak(config, endpoints))
    finally:
        localstack.down(config.profile)
