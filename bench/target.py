"""The system under test: where its services, databases and broker answer.

Read from a ``stack.env`` (``make bench`` uses ``.stack-bench/stack.env``); the smoke test
builds one from the end-to-end fixture's settings instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.demo.client import SystemUrls
from deploy.localstack.services import companions
from deploy.localstack.stackenv import read_stack_env
from deploy.localstack.supervisor import read_status
from shared.storage.db import asyncpg_dsn

COMPANIONS = frozenset(companion.name for companion in companions())
"""The names of the processes the local stack runs beside the services."""

__all__ = ["Target"]


@dataclass(frozen=True)
class Target:
    """A running system: its ``stack.env`` values and the supervisor's state folder."""

    env: Mapping[str, str]
    services_dir: Path
    """Where the supervisor keeps ``services.json`` (the instances' pids)."""

    @classmethod
    def from_env_file(cls, path: Path) -> Target:
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: start the stack first "
                "(python -m deploy.localstack up --profile bench, or make bench)"
            )
        return cls(read_stack_env(path), path.parent / "services")

    @property
    def urls(self) -> SystemUrls:
        return SystemUrls.from_env(self.env)

    @property
    def order_url(self) -> str:
        return self.env["SAGAKIT_ORDER_URL"]

    @property
    def kafka_bootstrap(self) -> str:
        return self.env["SAGAKIT_KAFKA_BOOTSTRAP"]

    @property
    def redis_url(self) -> str:
        return self.env["SAGAKIT_REDIS_URL"]

    @property
    def postgres_url(self) -> str:
        """A server URL where the benchmark may create databases (the synchronous chain's)."""
        return self.env["SAGAKIT_POSTGRES_URL"]

    @property
    def profile(self) -> str:
        """The local stack's profile, or "" when the system runs elsewhere."""
        return self.env.get("SAGAKIT_STACK_PROFILE", "")

    def database_dsn(self, service: str) -> str:
        """A plain asyncpg DSN of a service's database: the benchmark reads it directly."""
        return asyncpg_dsn(self.env[f"SAGAKIT_{service.upper()}_DATABASE_URL"])

    def metrics_urls(self) -> dict[str, str]:
        """Every service instance's ``/metrics``, by its base URL (each service's URL when
        the settings list no instances)."""
        urls = self.urls
        bases = urls.instances or (urls.order, urls.payment, urls.inventory, urls.shipping)
        return {base: f"{base.rstrip('/')}/metrics" for base in bases}

    def instances(self) -> dict[str, int | None]:
        """Each running service instance's name and pid, as the supervisor last reported
        them (the companions aside: they stand for the world outside the system)."""
        return {name: pid for name, pid in self._processes().items() if name not in COMPANIONS}

    def companions(self) -> dict[str, int | None]:
        """The companions the supervisor runs (the notification service's webhook receiver:
        the customer's side of a webhook), by name."""
        return {name: pid for name, pid in self._processes().items() if name in COMPANIONS}

    def _processes(self) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for entry in read_status(self.services_dir):
            pid = entry.get("pid")
            found[str(entry["name"])] = pid if isinstance(pid, int) else None
        return found
