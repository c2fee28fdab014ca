"""Where the system under test answers: its services, their databases, its local stack.

Read from a ``stack.env`` (``make chaos`` uses ``.stack-chaos/stack.env``; for a deployment of
your own, write one with the same ``SAGAKIT_*`` keys) or from any mapping of those keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.demo.client import SystemUrls
from deploy.localstack.declared import service_names
from deploy.localstack.stackenv import read_stack_env
from shared.storage.db import asyncpg_dsn

__all__ = ["Endpoints"]


@dataclass(frozen=True)
class Endpoints:
    """A running system's ``stack.env`` values, and where its supervisor keeps its state."""

    env: Mapping[str, str]
    services_dir: Path | None = None
    """The supervisor's folder (``services.json``: the instances' pids), on a local stack."""

    @classmethod
    def from_env_file(cls, path: Path) -> Endpoints:
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: start the stack first (make chaos does), or name the "
                "stack.env of your deployment"
            )
        return cls(read_stack_env(path), path.parent / "services")

    @property
    def urls(self) -> SystemUrls:
        return SystemUrls.from_env(self.env)

    @property
    def instance_urls(self) -> tuple[str, ...]:
        return self.urls.instances or tuple(self.urls.service(s) for s in self.services)

    @property
    def profile(self) -> str:
        """The local stack's profile, or "" for a system that runs elsewhere."""
        return self.env.get("SAGAKIT_STACK_PROFILE", "")

    @property
    def services(self) -> tuple[str, ...]:
        """Every service under ``services/`` (the run's system is this checkout's)."""
        return service_names()

    @property
    def has_databases(self) -> bool:
        return all(self._database_var(s) in self.env for s in self.services)

    def database_dsn(self, service: str) -> str:
        """A plain asyncpg DSN of a service's database (verify reads it directly)."""
        return asyncpg_dsn(self.env[self._database_var(service)])

    @staticmethod
    def _database_var(service: str) -> str:
        return f"SAGAKIT_{service.upper()}_DATABASE_URL"
