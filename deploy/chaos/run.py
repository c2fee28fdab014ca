"""One chaos run: the order mix placed at a steady rate while the schedule's faults strike,
then ``verify`` once everything is back.

Three things happen at once: the orders are placed (``workload``), the business faults are
kept on every instance (``business``), and the infrastructure faults strike one after the
other (``schedule``, ``actions``), each followed by a wait until every instance answers
``/readyz`` again. When the orders are placed and the last fault is over, the business faults
are removed and ``verify`` waits for the sagas to end and checks the invariants.
"""

from __future__ import annotations

import asyncio
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from deploy.chaos.actions import Brokers, LocalStack, unavailable_reason
from deploy.chaos.business import BusinessFaults
from deploy.chaos.config import ChaosConfig
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.manifest import Manifest
from deploy.chaos.schedule import ScheduledFault, build_schedule
from deploy.chaos.snapshot import unready_instances
from deploy.chaos.verify import VerifyReport, verify
from deploy.chaos.workload import Placement, Workload, place_orders
from deploy.demo.client import SagaClient
from deploy.localstack.declared import companion_slots
from deploy.localstack.supervisor import read_status

__all__ = ["ChaosReport", "InjectedFault", "instances_by_service", "run_chaos"]

SCHEMA = 1
READY_POLL_S = 0.5


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


@dataclass
class InjectedFault:
    """One fault as it happened."""

    kind: str
    target: str | None
    due_s: float
    at_s: float
    """When it struck, seconds after the first order was due."""
    detail: dict[str, Any] = field(default_factory=dict)
    recovered_s: float | None = None
    """From the strike until every instance was ready again; None if not in time."""
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "due_s": self.due_s,
            "at_s": round(self.at_s, 1),
            "detail": self.detail,
            "recovered_s": None if self.recovered_s is None else round(self.recovered_s, 1),
            "error": self.error,
        }


@dataclass
class ChaosReport:
    """Everything about one run: what was done, what was injected, what verify found."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    config: dict[str, Any]
    placement: Placement
    faults: list[InjectedFault]
    business_faults: dict[str, int]
    skipped_kinds: dict[str, str]
    manifest: Manifest
    verify: VerifyReport

    @property
    def errors(self) -> list[str]:
        """Why the run is not a full test (a fault that could not be injected)."""
        return [
            f"{' '.join(filter(None, (f.kind, f.target)))}: {f.error}"
            for f in self.faults
            if f.error
        ]

    @property
    def ok(self) -> bool:
        return self.verify.ok and not self.errors

    def fault_counts(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.faults if f.error is None))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds"),
            "elapsed_s": round((self.finished_at - self.started_at).total_seconds(), 1),
            "ok": self.ok,
            "config": self.config,
            "placement": self.placement.to_json(),
            "faults_injected": self.fault_counts(),
            "business_faults_injected": self.business_faults,
            "skipped_fault_kinds": self.skipped_kinds,
            "errors": self.errors,
            "faults": [fault.to_json() for fault in self.faults],
            "verify": self.verify.to_json(),
            "manifest": self.manifest.to_json(),
        }


async def instances_by_service(urls: Sequence[str]) -> dict[str, list[str]]:
    """Which service each instance runs, from its ``/healthz``."""
    found: dict[str, list[str]] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        for url in urls:
            service = (await http.get(f"{url}/healthz")).json()["service"]
            found.setdefault(str(service), []).append(url)
    return found


async def wait_until_ready(urls: Sequence[str], timeout: float) -> float | None:
    """Seconds until every instance answered ``/readyz`` with 200; None after ``timeout``."""
    began = time.monotonic()
    while await unready_instances(urls):
        if time.monotonic() - began > timeout:
            return None
        await asyncio.sleep(READY_POLL_S)
    return time.monotonic() - began


async def _strike(stack: LocalStack, fault: ScheduledFault, config: ChaosConfig) -> dict[str, Any]:
    if fault.kind == "instance":
        assert fault.target is not None
        return await stack.kill_instance(fault.target)
    if fault.kind == "broker":
        return await stack.kill_broker()
    if fault.kind == "redis":
        return await stack.stop_redis(config.redis_down_s)
    if fault.kind == "postgres":
        return await stack.kill_postgres()
    raise ValueError(f"unknown fault kind {fault.kind!r}")


async def _run_schedule(
    schedule: Sequence[ScheduledFault],
    stack: LocalStack | None,
    urls: Sequence[str],
    config: ChaosConfig,
    began: float,
) -> list[InjectedFault]:
    done: list[InjectedFault] = []
    for fault in schedule:
        await asyncio.sleep(max(0.0, began + fault.at_s - time.monotonic()))
        at = time.monotonic()
        injected = InjectedFault(fault.kind, fault.target, fault.at_s, at - began)
        done.append(injected)
        say(f"fault: {fault.kind} {fault.target or ''}".rstrip())
        try:
            assert stack is not None  # kinds the stack cannot act on were left out
            injected.detail = await _strike(stack, fault, config)
        except Exception as error:
            injected.error = f"{type(error).__name__}: {error}"
            say(f"fault {fault.kind} failed: {injected.error}")
            traceback.print_exc()
        if await wait_until_ready(urls, config.recovery_timeout_s) is None:
            unready = await unready_instances(urls)
            injected.detail["unready_after_timeout"] = list(unready)
            say(
                f"not every instance ready {config.recovery_timeout_s:.0f} s after "
                f"{fault.kind}: {', '.join(unready)}"
            )
        else:
            injected.recovered_s = time.monotonic() - at
    return done


def _instance_names(endpoints: Endpoints) -> list[str]:
    """The services' instances the supervisor runs: what an instance kill may pick. Not the
    companions beside them (a demo's webhook receiver): the system under test is the services."""
    if endpoints.services_dir is None:
        return []
    companions = {slot.companion.name for slot in companion_slots()}
    names = [str(entry["name"]) for entry in read_status(endpoints.services_dir)]
    return [name for name in names if name not in companions]


async def run_chaos(
    config: ChaosConfig, endpoints: Endpoints | None = None, brokers: Brokers | None = None
) -> ChaosReport:
    """Run the order mix under the configured faults, then verify; the report of it all.

    ``endpoints``: the system (default: ``config.env_file``); ``brokers``: which broker a
    broker fault kills (default: the local stack's single broker).
    """
    endpoints = endpoints or Endpoints.from_env_file(config.env_file)
    started = datetime.now(UTC)
    run_id = f"chaos-{uuid.uuid4().hex[:6]}"
    workload = Workload(run_id, config.orders, seed=config.seed)
    manifest = workload.manifest()
    skipped = {
        kind: reason
        for kind in config.faults
        if (reason := unavailable_reason(endpoints.profile, kind)) is not None
    }
    kinds = [kind for kind in config.faults if kind not in skipped]
    stack = LocalStack(endpoints.profile, brokers) if kinds else None
    window = config.orders / config.rate
    schedule = build_schedule(
        window,
        rounds=config.fault_rounds,
        instances=_instance_names(endpoints),
        instance_kills=config.instance_kills,
        kinds=kinds,
    )
    urls = list(endpoints.instance_urls)
    say(
        f"{run_id}: {config.orders} orders at {config.rate:g}/s (~{window:.0f} s), "
        f"{len(schedule)} infrastructure faults"
        + "".join(f"; {kind} skipped: {reason}" for kind, reason in skipped.items())
    )
    if await wait_until_ready(urls, config.recovery_timeout_s) is None:
        raise RuntimeError(f"not every instance is ready: {await unready_instances(urls)}")
    async with SagaClient(endpoints.urls) as client:
        await workload.provision(client, manifest)
    keeper = BusinessFaults(
        await instances_by_service(urls),
        endpoints.urls.admin_token,
        transient_every_s=config.transient_every_s,
    )
    stop = asyncio.Event()
    keeping = asyncio.create_task(keeper.run(stop))
    began = time.monotonic()
    placing = asyncio.create_task(
        place_orders(
            endpoints.urls.order,
            workload.bodies(),
            key_prefix=run_id,
            rate=config.rate,
            concurrency=config.concurrency,
            give_up_s=config.give_up_s,
        )
    )
    try:
        faults = await _run_schedule(schedule, stack, urls, config, began)
        placement = await placing
    finally:
        stop.set()
        await keeping
        await keeper.clear()
    manifest.orders = placement.accepted
    say(
        f"{len(placement.accepted)} orders accepted in {placement.seconds:.0f} s "
        f"({placement.retries} requests sent again); verifying ..."
    )
    checked = await verify(endpoints, manifest, config.settle_timeout_s)
    say(f"verify: {checked.violations} violation(s), settled in {checked.settle_s:.0f} s")
    return ChaosReport(
        run_id=run_id,
        started_at=started,
        finished_at=datetime.now(UTC),
        config=_config_json(config) | {"profile": endpoints.profile, "rounds": config.fault_rounds},
        placement=placement,
        faults=faults,
        business_faults=dict(keeper.added),
        skipped_kinds=skipped,
        manifest=manifest,
        verify=checked,
    )


def _config_json(config: ChaosConfig) -> dict[str, Any]:
    data: Mapping[str, Any] = config.model_dump(mode="json", exclude={"env_file", "results_dir"})
    return dict(data)
