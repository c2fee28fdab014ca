"""Every service under ``services/`` running as real processes, supervised, on the session's
infrastructure.

The ``system`` fixture gives each service a fresh database and the session its own copy of
every topic, starts them under the same supervisor ``make up`` uses (the same instances:
``deploy.localstack.declared``, two of payment; restarts on exit) with the companions the
services declare (the notification service's webhook receiver, its settings given to every
service), waits until every process is ready, and stops them at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deploy.demo.client import SagaClient, SystemUrls
from deploy.localstack.declared import (
    companion_slots,
    declared_services,
    instance_slots,
    service_names,
)
from deploy.localstack.ports import free_ports
from deploy.localstack.supervisor import read_status
from shared.envfile import write_env_file
from tests.infra import Infrastructure

SERVICES = service_names()
READY_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Instance:
    name: str
    service: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _instances() -> tuple[Instance, ...]:
    """The session's instances on free ports, chosen when the system starts (tests find them
    in the supervisor's status: tests/e2e/invariants.py ``instances``). Each session gets its
    own, so two sessions on one machine never talk to each other's services."""
    return _processes()[0]


def _processes() -> tuple[tuple[Instance, ...], tuple[Instance, ...]]:
    """(the instances, the companions: ``python -m services.<module>``), on free ports all
    chosen at once, so that no two of them are given the same one."""
    slots, companions = instance_slots(), companion_slots()
    ports = free_ports(len(slots) + len(companions))
    return (
        tuple(Instance(s.name, s.service, port) for s, port in zip(slots, ports, strict=False)),
        tuple(
            Instance(c.companion.name, c.companion.module, port)
            for c, port in zip(companions, ports[len(slots) :], strict=True)
        ),
    )


@dataclass
class RunningSystem:
    """The services as a user meets them, plus what tests need to look behind the API."""

    env: dict[str, str]
    state_dir: Path
    client: SagaClient

    @property
    def kafka_bootstrap(self) -> str:
        return self.env["SAGAKIT_KAFKA_BOOTSTRAP"]

    def topic(self, name: str) -> str:
        return self.env["SAGAKIT_TOPIC_PREFIX"] + name

    def restarts(self) -> dict[str, int]:
        """How often the supervisor restarted each instance."""
        return {str(i["name"]): int(str(i["restarts"])) for i in read_status(self.state_dir)}

    def log(self, instance: str) -> str:
        return (self.state_dir / "logs" / f"{instance}.log").read_text(errors="replace")


async def _system_env(
    infra: Infrastructure,
    instances: tuple[Instance, ...],
    companions: tuple[Instance, ...] = (),
) -> dict[str, str]:
    env = {
        "SAGAKIT_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "SAGAKIT_REDIS_URL": infra.redis_url,
        "SAGAKIT_TOPIC_PREFIX": infra.topic_prefix("e2e"),
        "SAGAKIT_ADMIN_TOKEN": f"e2e-{infra.run_id}",
        # Quick retries keep the fault scenarios short; the limit stays the default 3.
        "SAGAKIT_RETRY_BASE_DELAY_MS": "20",
        "SAGAKIT_RETRY_MAX_DELAY_MS": "200",
        "SAGAKIT_INSTANCE_URLS": ",".join(instance.url for instance in instances),
        # JSON lines: tests/e2e/test_observability.py reads the events' ids from them.
        "SAGAKIT_LOG_FORMAT": "json",
    }
    for service in declared_services():
        env[service.url_var] = next(i.url for i in instances if i.service == service.name)
        env[service.database_var] = await infra.create_database(service.name)
    for slot, companion in zip(companion_slots(), companions, strict=False):
        env |= slot.companion.env(companion.url)
    return env


async def _wait_ready(state_dir: Path, instances: tuple[Instance, ...]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2) as http:
        for instance in instances:
            while True:
                try:
                    if (await http.get(f"{instance.url}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    log = state_dir / "logs" / f"{instance.name}.log"
                    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
                    raise TimeoutError(f"{instance.name} not ready in {READY_TIMEOUT_S} s:\n{tail}")
                await asyncio.sleep(0.2)


def _start_supervisor(
    state_dir: Path, env_file: Path, instances: tuple[Instance, ...]
) -> subprocess.Popen[bytes]:
    specs = [f"{i.name}={i.service}:{i.port}" for i in instances]
    argv = [sys.executable, "-m", "deploy.localstack.supervisor", str(state_dir), str(env_file)]
    with open(state_dir / "supervisor.log", "wb") as log:
        return subprocess.Popen(
            [*argv, *specs],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # The services must not inherit a shell's stack.env pointing at the dev stack.
            env={k: v for k, v in os.environ.items() if not k.startswith("SAGAKIT_")},
        )


@asynccontextmanager
async def running_system(
    infra: Infrastructure, state_dir: Path, settings: Mapping[str, str] | None = None
) -> AsyncIterator[RunningSystem]:
    """Every service on fresh databases and topics of their own, until the block ends.

    ``settings`` are more ``SAGAKIT_*`` variables for every service (a test module that needs
    other settings, short deadlines say, starts a system of its own with them); so does a
    test whose input may leave the services in a state others would trip over (the OpenAPI
    fuzzer)."""
    instances, companions = _processes()
    env = await _system_env(infra, instances, companions) | dict(settings or {})
    env_file = state_dir / "stack.env"
    write_env_file(env_file, env)
    supervisor = _start_supervisor(state_dir, env_file, (*instances, *companions))
    try:
        await _wait_ready(state_dir, (*instances, *companions))
        async with SagaClient(SystemUrls.from_env(env)) as client:
            yield RunningSystem(env, state_dir, client)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(supervisor.wait, 60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait()


@pytest.fixture(scope="session")
async def system(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    async with running_system(infra, tmp_path_factory.mktemp("services")) as running:
        yield running


@pytest.fixture(autouse=True)
async def _no_faults_left_behind(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A fault one test injects must not fire in the next one."""
    yield
    if "system" in request.fixturenames:
        running: RunningSystem = request.getfixturevalue("system")
        await running.client.clear_faults()
