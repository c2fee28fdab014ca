"""Starting and stopping the synchronous chain: fresh databases, four processes, and the
customers' balances and the skus' stock the benchmark's orders need."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from bench.workload import BALANCE, STOCK, Workload
from deploy.localstack.ports import free_ports
from deploy.localstack.postgres import create_database, database_url, drop_database
from services.events import CATALOGUE
from services.inventory import store as inventory_store
from services.order import store as order_store
from services.payment import store as payment_store
from services.shipping import store as shipping_store
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory, make_engine
from shared.storage.migrations import upgrade_to_head

__all__ = ["SERVICES", "SyncChain", "running_chain"]

SERVICES = ("order", "payment", "inventory", "shipping")
# The services' own migrations: the chain's tables are exactly theirs.
MIGRATIONS = {
    name: Path(module.__file__ or "").with_name("migrations")
    for name, module in (
        ("order", order_store),
        ("payment", payment_store),
        ("inventory", inventory_store),
        ("shipping", shipping_store),
    )
}
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass
class SyncChain:
    """The four running processes and where they answer."""

    urls: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]
    logs: Path

    @property
    def order_url(self) -> str:
        return self.urls["order"]

    def pid(self, service: str) -> int:
        return self.processes[service].pid


async def _fresh_databases(server_url: str, prefix: str) -> dict[str, str]:
    """One empty database per service, migrated to the service's head; their URLs."""
    urls = {}
    for service in SERVICES:
        name = f"{prefix}_{service}"
        await drop_database(server_url, name)
        await create_database(server_url, name)
        urls[service] = database_url(server_url, name)
        await upgrade_to_head(urls[service], MIGRATIONS[service])
    return urls


async def _provision(urls: dict[str, str], workload: Workload) -> None:
    """The benchmark's customers and skus, written with the services' own store functions."""
    for service in ("payment", "inventory"):
        engine = make_engine(urls[service])
        try:
            async with UnitOfWorkFactory(engine, Topics(CATALOGUE))() as uow:
                if service == "payment":
                    balance = Decimal(BALANCE)
                    for index in range(workload.customers):
                        await payment_store.set_balance(
                            uow.session, workload.customer(index), balance
                        )
                else:
                    for index in range(workload.skus):
                        await inventory_store.set_available(uow.session, workload.sku(index), STOCK)
                await uow.commit()
        finally:
            await engine.dispose()


def _spawn(
    urls: dict[str, str], databases: dict[str, str], logs: Path
) -> dict[str, subprocess.Popen[bytes]]:
    """Start the four processes, each with its database and the others' URLs."""
    logs.mkdir(parents=True, exist_ok=True)
    # Only what the chain needs: a shell's SAGAKIT_* settings must not reach it.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SAGAKIT_", "BENCH_"))}
    base |= {f"BENCH_SYNC_{s.upper()}_URL": urls[s] for s in SERVICES if s != "order"}
    processes = {}
    for service, url in urls.items():
        port = url.rsplit(":", 1)[1]
        argv = [sys.executable, "-m", "bench.syncchain", service, "--port", port]
        env = base | {"BENCH_SYNC_DATABASE_URL": databases[service]}
        with open(logs / f"{service}.log", "wb") as log:
            processes[service] = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
    return processes


async def _wait_ready(chain: SyncChain) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=2) as http:
        for service, url in chain.urls.items():
            while True:
                if chain.processes[service].poll() is not None:
                    log = (chain.logs / f"{service}.log").read_text(errors="replace")
                    raise RuntimeError(f"sync chain {service} exited:\n{log[-2000:]}")
                try:
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"sync chain {service} at {url} not ready in time")
                await asyncio.sleep(0.1)


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        # A process the outage left stopped must run again to hear the SIGTERM.
        for signum in (signal.SIGCONT, signal.SIGTERM):
            if process.poll() is None:
                process.send_signal(signum)
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def running_chain(
    server_url: str, logs: Path, database_prefix: str, workload: Workload
) -> AsyncIterator[SyncChain]:
    """The chain on free ports, with fresh databases named ``<database_prefix>_<service>`` on
    ``server_url``, and its processes' logs in ``logs``; all of it removed after."""
    service_ports = free_ports(len(SERVICES))
    databases = await _fresh_databases(server_url, database_prefix)
    await _provision(databases, workload)
    urls = {s: f"http://127.0.0.1:{port}" for s, port in zip(SERVICES, service_ports, strict=True)}
    processes = _spawn(urls, databases, logs)
    chain = SyncChain(urls, processes, logs)
    try:
        await _wait_ready(chain)
        yield chain
    finally:
        await asyncio.to_thread(_stop, list(processes.values()))
        for service in SERVICES:
            await drop_database(server_url, f"{database_prefix}_{service}")
