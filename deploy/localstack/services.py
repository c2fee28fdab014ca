"""The services under ``services/``, each instance a process kept alive by the supervisor.

``up`` starts ``deploy.localstack.supervisor`` in the background: it runs every instance
(``deploy.localstack.declared``: each service on its declared port's offset, and a second
payment instance, to show load balancing), restarts any that dies and counts the restarts,
which ``status`` shows. The same supervisor runs the companions services declare
(``declared.companion_slots``: the notification service's webhook receiver), whose settings
go into stack.env. ``up`` returns once every process answers ``/readyz``. The test
profile starts no services here (``Profile.runs_services``): the end-to-end tests run their
own, on their own databases and topics (tests/e2e/conftest.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from deploy.localstack import ports
from deploy.localstack.component import Context, Plan, StatusRow
from deploy.localstack.declared import companion_slots, declared_services, instance_slots
from deploy.localstack.errors import StackError
from deploy.localstack.prereqs import Needs
from deploy.localstack.processes import is_alive, running_pid, start_server, terminate
from deploy.localstack.profiles import HOST
from deploy.localstack.readiness import wait_until_answers
from deploy.localstack.supervisor import read_status

__all__ = ["Instance", "Services", "companions", "instances", "processes"]

READY_TIMEOUT_S = 90.0
SUPERVISOR = "deploy.localstack.supervisor"


@dataclass(frozen=True)
class Instance:
    """One process: its name, the module it runs (``services.<service>``), its port's offset."""

    name: str
    service: str
    offset: int

    def port(self, ctx: Context) -> int:
        return ctx.profile.first_service_port + self.offset

    def url(self, ctx: Context) -> str:
        return f"http://{HOST}:{self.port(ctx)}"


def instances() -> tuple[Instance, ...]:
    """Every instance: on the dev stack order 8000, payment 8001, inventory 8002, shipping
    8003 (their declared ports), and the second payment on 8004 (the first port left)."""
    return tuple(Instance(s.name, s.service, s.offset) for s in instance_slots())


def companions() -> tuple[Instance, ...]:
    """The companions services declare (the notification service's receiver on 8007)."""
    slots = companion_slots()
    return tuple(Instance(s.companion.name, s.companion.module, s.offset) for s in slots)


def processes() -> tuple[Instance, ...]:
    """What the supervisor runs: every instance, then the companions."""
    return (*instances(), *companions())


class Services:
    """Every declared service (payment twice) under one supervisor."""

    name = "services"

    def plan(self, ctx: Context) -> Plan:
        if not ctx.profile.runs_services:
            return Plan("none", detail="not part of the test stack (e2e tests start their own)")
        if self._pid(ctx):
            return Plan.running()
        hint = "stop what listens there (make status shows what make up started)"
        return Plan.start(Needs(ports=tuple((i.port(ctx), hint) for i in processes())))

    def start(self, ctx: Context) -> None:
        folder = ctx.state("services")
        env_file = ctx.profile.state_dir / "stack.env"
        specs = [f"{i.name}={i.service}:{i.port(ctx)}" for i in processes()]
        argv = [sys.executable, "-m", SUPERVISOR, str(folder), str(env_file), *specs]
        start_server(argv, folder, "supervisor")

    def ready(self, ctx: Context) -> None:
        if not ctx.profile.runs_services:
            return
        folder = ctx.state("services")
        for instance in processes():
            url = f"{instance.url(ctx)}/readyz"
            wait_until_answers(
                f"{instance.name} at {instance.url(ctx)}",
                partial(_ready, url),
                READY_TIMEOUT_S,
                alive=lambda: self._pid(ctx) is not None,
                log=folder / "logs" / f"{instance.name}.log",
            )

    def env(self, ctx: Context) -> dict[str, str]:
        first = {i.service: i.url(ctx) for i in reversed(instances())}
        env = {s.url_var: first[s.name] for s in declared_services()} | {
            "SAGAKIT_INSTANCE_URLS": ",".join(i.url(ctx) for i in instances()),
        }
        if not ctx.profile.runs_services:
            return env
        for slot in companion_slots():
            port = ctx.profile.first_service_port + slot.offset
            env |= slot.companion.env(f"http://{HOST}:{port}")
        return env

    def stop(self, ctx: Context) -> None:
        pid = self._pid(ctx)
        if pid:
            # The supervisor stops every instance gracefully (they drain and commit) first.
            terminate(pid, "the service supervisor", timeout=45.0)
        self._pidfile(ctx).unlink(missing_ok=True)
        ports.wait_until_free([i.port(ctx) for i in processes()], "the services")

    def status(self, ctx: Context) -> list[StatusRow]:
        if not ctx.profile.runs_services:
            return []
        running = self._pid(ctx) is not None
        known = {str(entry["name"]): entry for entry in read_status(ctx.state("services"))}
        rows = []
        for instance in processes():
            entry = known.get(instance.name, {})
            pid = entry.get("pid") if running else None
            alive_pid = pid if isinstance(pid, int) and is_alive(pid) else None
            state = "running" if alive_pid else "starting" if running else "stopped"
            if entry.get("held"):
                state = "held (stopping)" if alive_pid else "held"
            restarts = entry.get("restarts", 0)
            if restarts:
                state += f", {restarts} restart(s), last exit {entry.get('last_exit')}"
            rows.append(StatusRow(instance.name, instance.url(ctx), alive_pid, state))
        return rows

    def _pidfile(self, ctx: Context) -> Path:
        return ctx.state("services") / "supervisor.pid"

    def _pid(self, ctx: Context) -> int | None:
        return running_pid(self._pidfile(ctx), SUPERVISOR)


async def _ready(url: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    if response.status_code != 200:
        raise StackError(f"{url} answered {response.status_code}: {response.text[:200]}")
