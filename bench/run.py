"""One benchmark run: every chosen scenario in turn, gathered into one results document.

The event-driven scenarios come first, each starting once the last one's sagas have ended;
then the transport limit (the broker alone); then the synchronous chain, started for its
scenarios and stopped after, so that neither design runs while the other is measured. A
scenario that fails is reported as such and the run goes on with the next.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.broker import partition_count
from bench.closed_loop import ClosedLoopResult, run_closed_loop
from bench.config import BenchSettings
from bench.cpu import CpuMeter, system_processes
from bench.hops import Snapshot, breakdown, read_snapshot, since
from bench.machine import commit, host, load_average, server_versions
from bench.open_loop import OpenLoopStep, run_open_loop_step
from bench.outage import OutageResult, check_processes, run_outage
from bench.reset import reset_bench_stack
from bench.sagas import wait_until_idle
from bench.stall import StallResult, run_stall
from bench.sync_baseline import SyncResult, run_sync_closed_loop
from bench.syncchain.chain import SyncChain, running_chain
from bench.target import Target
from bench.transport import TransportResult, run_transport
from bench.tuning import platform_settings
from bench.workload import CUSTOMER_PREFIX, Workload
from deploy.demo.client import SagaClient
from services.asyncapi import reference_services
from services.events import CATALOGUE
from shared.contracts.topics import Topics
from shared.settings import PlatformSettings, kafka_client_options

__all__ = ["SyncPlacement", "run"]

T = TypeVar("T")
SCHEMA = 1
LOAD_GENERATOR = "bench"
"""The benchmark's own process in the CPU readings (``bench.cpu``): not the system's."""
OFFSETS_SETTLE_S = 2.0
"""Waited after a step's sagas have ended before reading the stage histograms: consumers
commit their offsets about once a second, after a poll of up to 0.5 s
(``shared.consuming.partitions``, ``shared.consuming.consumer``)."""


@dataclass(frozen=True)
class SyncPlacement:
    """Where the synchronous chain keeps its databases (a name prefix) and its logs."""

    database_prefix: str
    logs: Path


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


@dataclass
class _Run:
    settings: BenchSettings
    target: Target
    scenarios: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    extra_processes: dict[str, int] = field(default_factory=dict)
    """Processes to measure besides the system's: the synchronous chain's, while it runs."""
    next_index: int = 0

    @property
    def meter(self) -> CpuMeter:
        return CpuMeter(lambda: system_processes(self.target, self.extra_processes))

    @property
    def workload(self) -> Workload:
        return Workload(self.settings.customers, self.settings.skus)

    def indices(self, count: int) -> int:
        """The first of ``count`` fresh order indices (they pick customers and skus)."""
        first, self.next_index = self.next_index, self.next_index + count
        return first

    def wants(self, scenario: str) -> bool:
        return scenario in self.settings.scenarios

    async def step(self, name: str, work: Callable[[], Awaitable[T]]) -> T | None:
        """Run one scenario, timed; a failure is recorded and the run goes on."""
        say(f"{name} ...")
        began, cpu = time.monotonic(), self.meter.reading()
        try:
            return await work()
        except Exception as error:
            self.errors[name] = f"{type(error).__name__}: {error}"
            say(f"{name} failed: {self.errors[name]}")
            traceback.print_exc()
            return None
        finally:
            self.seconds[name] = round(time.monotonic() - began, 1)
            self.cpu[name] = self.meter.since(cpu)

    async def stages(self) -> Snapshot:
        """Every instance's stage histograms now (``bench.hops``)."""
        return await read_snapshot(self.target.metrics_urls())

    async def hops(self, before: Snapshot) -> list[dict[str, Any]]:
        """Each hop's stages since ``before``; call once the step's sagas have ended."""
        await asyncio.sleep(OFFSETS_SETTLE_S)
        observed = since(before, await self.stages())
        return breakdown(observed, self.target.env.get("SAGAKIT_TOPIC_PREFIX", ""))

    async def idle(self) -> None:
        """Wait until the sagas of the last scenario have ended: the next one starts clean."""
        busy = await wait_until_idle(
            self.target.database_dsn("order"), CUSTOMER_PREFIX, self.settings.drain_timeout_s
        )
        if busy:
            say(f"{busy} sagas still under way after {self.settings.drain_timeout_s:.0f} s")


async def _event_driven(run: _Run) -> None:
    settings = run.settings
    if settings.warmup_orders:
        # Connections, caches, consumer fetch sessions: the first orders pay for them.
        warmup = await run.step("warm-up", partial(_closed, run, settings.warmup_orders))
        run.scenarios["warmup"] = warmup.to_json() if warmup else None
    if run.wants("closed"):
        before = await run.stages()
        closed = await run.step("closed loop", partial(_closed, run, settings.orders))
        await run.idle()
        if closed:
            cpu = cpu_per_saga(
                run.cpu["closed loop"],
                closed.sagas.completed,
                saga_listeners(),
                frozenset(run.target.companions()),
            )
            hops = await run.hops(before)
            run.scenarios["closed_loop"] = closed.to_json() | {"cpu": cpu, "hops": hops}
        else:
            run.scenarios["closed_loop"] = None
    if run.wants("open"):
        steps = []
        for offered in settings.open_rates:
            before = await run.stages()
            step = await run.step(f"open loop {offered:g}/s", partial(_open_step, run, offered))
            await run.idle()
            if step:
                steps.append(step.to_json() | {"hops": await run.hops(before)})
            else:
                steps.append({"offered_per_s": offered, "failed": True})
        run.scenarios["open_loop"] = steps
    if run.wants("outage"):
        outage = await run.step("outage, event-driven", partial(_event_outage, run))
        run.scenarios["outage_event_driven"] = outage.to_json() if outage else None
        await run.idle()


async def _closed(run: _Run, orders: int) -> ClosedLoopResult:
    return await run_closed_loop(
        run.target,
        run.workload.body,
        orders=orders,
        clients=run.settings.clients,
        saga_timeout=run.settings.saga_timeout_s,
        first_index=run.indices(orders),
    )


async def _open_step(run: _Run, offered: float) -> OpenLoopStep:
    settings = run.settings
    return await run_open_loop_step(
        run.target,
        run.workload.body,
        offered_per_s=offered,
        seconds=settings.open_seconds,
        first_index=run.indices(round(offered * settings.open_seconds)),
        saga_timeout=settings.drain_timeout_s,
        max_in_flight=settings.open_max_in_flight,
    )


async def _event_outage(run: _Run) -> OutageResult:
    settings = run.settings
    instances = run.target.instances()
    payments = {name: pid for name, pid in instances.items() if name.startswith("payment")}
    pids = {name: pid for name, pid in payments.items() if pid is not None}
    if not pids or len(pids) < len(payments):
        raise RuntimeError(f"payment instances not all running: {payments}")
    check_processes(pids, "services.payment")
    return await run_outage(
        "event-driven",
        run.target.order_url,
        run.workload.body,
        pids,
        rate=settings.outage_rate,
        before_s=settings.outage_margin_s,
        stop_s=settings.outage_seconds,
        after_s=settings.outage_margin_s,
        order_dsn=run.target.database_dsn("order"),
        saga_timeout=settings.drain_timeout_s,
        first_index=run.indices(round(settings.outage_rate * 60)),
    )


async def _stall(run: _Run) -> StallResult:
    settings = run.settings
    return await run_stall(
        run.target.postgres_url,
        partitions=settings.stall_partitions,
        rate=settings.stall_rate,
        margin_s=settings.stall_margin_s,
        stall_s=settings.stall_seconds,
        drain_timeout_s=settings.drain_timeout_s,
    )


async def _transport(run: _Run, partitions: int) -> TransportResult:
    settings = run.settings
    return await run_transport(
        run.target.kafka_bootstrap,
        chains=settings.transport_chains,
        in_flight=settings.transport_in_flight,
        partitions=partitions,
        unloaded_chains=settings.transport_unloaded_chains,
    )


async def _synchronous(run: _Run, placement: SyncPlacement) -> SyncResult | None:
    say("synchronous chain: fresh databases, four processes ...")
    async with running_chain(
        run.target.postgres_url, placement.logs, placement.database_prefix, run.workload
    ) as chain:
        run.extra_processes = {f"sync {s}": chain.pid(s) for s in chain.urls}
        try:
            result = await run.step("synchronous chain", partial(_sync_closed_loop, run, chain))
            run.scenarios["synchronous"] = result.to_json() if result else None
            if run.wants("outage"):
                outage = await run.step("outage, synchronous", partial(_sync_outage, run, chain))
                run.scenarios["outage_synchronous"] = outage.to_json() if outage else None
        finally:
            run.extra_processes = {}
    return result


async def _sync_closed_loop(run: _Run, chain: SyncChain) -> SyncResult:
    return await run_sync_closed_loop(
        chain.order_url,
        run.workload.body,
        clients=run.settings.clients,
        seconds=run.settings.sync_seconds,
        warmup_orders=run.settings.warmup_orders,
        first_index=run.indices(1_000_000),
    )


async def _sync_outage(run: _Run, chain: SyncChain) -> OutageResult:
    settings = run.settings
    return await run_outage(
        "synchronous",
        chain.order_url,
        run.workload.body,
        {"payment": chain.pid("payment")},
        rate=settings.outage_rate,
        before_s=settings.outage_margin_s,
        stop_s=settings.outage_seconds,
        after_s=settings.outage_margin_s,
        order_dsn=None,
        saga_timeout=settings.drain_timeout_s,
        first_index=run.indices(round(settings.outage_rate * 60)),
    )


INFRASTRUCTURE = frozenset({"kafka", "postgres", "redis"})


def cpu_per_saga(
    cpu_seconds: dict[str, float],
    completed: int,
    listeners: frozenset[str] = frozenset(),
    outside: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The system's CPU seconds during the closed loop (every process measured but the load
    generator's and those ``outside`` the system: the webhook receiver), in all and per
    completed saga (milliseconds), each process's share too, and three parts: the saga's
    steps (services that emit events), its listeners (services named in ``listeners``: they
    read the saga's events and emit none, so the saga does not wait for them) and the
    infrastructure (Kafka, PostgreSQL, Redis)."""
    left_out = {LOAD_GENERATOR, *outside}
    system = {name: s for name, s in cpu_seconds.items() if name not in left_out}
    total = sum(system.values())

    def ms(seconds: float) -> float | None:
        return round(seconds / completed * 1000, 3) if completed else None

    def part(name: str) -> str:
        if name in INFRASTRUCTURE:
            return "infrastructure"
        return "listeners" if _service_of(name) in listeners else "saga steps"

    parts = dict.fromkeys(("saga steps", "listeners", "infrastructure"), 0.0)
    for name, seconds in system.items():
        parts[part(name)] += seconds
    return {
        "system_cpu_s": round(total, 2),
        "load_generator_cpu_s": cpu_seconds.get(LOAD_GENERATOR),
        "outside_cpu_s": {name: cpu_seconds[name] for name in sorted(outside & set(cpu_seconds))},
        "completed_sagas": completed,
        "per_saga_ms": ms(total),
        "per_saga_ms_by_process": {
            name: ms(seconds) for name, seconds in sorted(system.items(), key=lambda i: -i[1])
        },
        "per_saga_ms_by_part": {name: ms(seconds) for name, seconds in parts.items()},
    }


def _service_of(instance: str) -> str:
    """``payment-2`` -> ``payment``: an instance's service."""
    name, _, number = instance.rpartition("-")
    return name if name and number.isdigit() else instance


def saga_listeners() -> frozenset[str]:
    """The services that emit no event (read from their code, as the AsyncAPI document is)."""
    return frozenset(wired.name for wired in reference_services() if not wired.sends)


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top and bottom else None


def _ratios(
    closed: dict[str, Any] | None, transport: TransportResult | None, sync: SyncResult | None
) -> dict[str, float | None]:
    sagas = closed["sagas"]["completed_per_s"] if closed else None
    accepted = closed["accepted_per_s"] if closed else None
    chains = transport.chains_per_s if transport else None
    orders = sync.orders_per_s if sync else None
    return {
        "sagas_per_s_over_transport_chains_per_s": _ratio(sagas, chains),
        "accepted_per_s_over_sync_orders_per_s": _ratio(accepted, orders),
        "sagas_per_s_over_sync_orders_per_s": _ratio(sagas, orders),
    }


async def run(
    settings: BenchSettings, target: Target, placement: SyncPlacement, event_loop: str
) -> dict[str, Any]:
    """Every scenario ``settings`` chooses against ``target``; the results document."""
    began = datetime.now(UTC)
    say(f"benchmark of {target.order_url}: {', '.join(settings.scenarios)}")
    kafka = kafka_client_options(PlatformSettings(kafka_bootstrap=target.kafka_bootstrap))
    topic = Topics(CATALOGUE, target.env.get("SAGAKIT_TOPIC_PREFIX", "")).for_event("OrderCreated")
    partitions = await partition_count(kafka, topic)
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": began.isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": host() | {"load_average_at_start": load_average()},
        "versions": await server_versions(target.database_dsn("order"), target.redis_url),
        "bench_settings": settings.model_dump(mode="json") | {"event_loop": event_loop},
        "platform_settings": platform_settings(target.env, target.instances(), partitions),
    }
    run = _Run(settings, target)
    if target.profile == "bench":
        say("emptying the bench stack's tables and Redis")
        await reset_bench_stack(target)
    async with SagaClient(target.urls) as client:
        await run.workload.provision(client)
    await _event_driven(run)
    transport = None
    if run.wants("transport"):
        # The platform's partition count; 6 (the settings' default) if the topic is missing.
        transport = await run.step("transport limit", partial(_transport, run, partitions or 6))
    run.scenarios["transport"] = transport.to_json() if transport else None
    sync = await _synchronous(run, placement) if run.wants("sync") else None
    if run.wants("stall"):
        stall = await run.step("partition stall", partial(_stall, run))
        run.scenarios["stall"] = stall.to_json() if stall else None
    closed: dict[str, Any] | None = run.scenarios.get("closed_loop")
    finished = datetime.now(UTC)
    return document | {
        "scenarios": run.scenarios,
        "ratios": _ratios(closed, transport, sync),
        "errors": run.errors,
        "scenario_seconds": run.seconds,
        "scenario_cpu_seconds": run.cpu,
        "finished_at": finished.isoformat(timespec="seconds"),
        "elapsed_s": round((finished - began).total_seconds(), 1),
        "load_average_at_end": load_average(),
    }
