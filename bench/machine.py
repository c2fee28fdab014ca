"""The machine and the software a run measured: cores, memory, versions, the commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio

from deploy.localstack.kafka import KAFKA_VERSION
from deploy.localstack.profiles import REPO_ROOT

__all__ = ["commit", "host", "load_average", "server_versions"]

# The libraries whose speed the numbers depend on; uvloop and httptools when installed.
LIBRARIES = (
    "aiokafka",
    "sqlalchemy",
    "asyncpg",
    "redis",
    "fastapi",
    "uvicorn",
    "httpx",
    "pydantic",
    "uvloop",
    "httptools",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def load_average() -> list[float]:
    """1, 5 and 15 minutes: whatever else ran on the machine shows here."""
    return [round(value, 2) for value in os.getloadavg()]


def host() -> dict[str, Any]:
    """Cores, memory, CPU model, OS, Python, and the versions of the libraries that matter."""
    libraries: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = None
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libraries,
    }


async def server_versions(order_dsn: str, redis_url: str) -> dict[str, str]:
    """PostgreSQL's and Redis's versions as they report them; Kafka's is the local stack's."""
    connection = await asyncpg.connect(order_dsn)
    try:
        postgres = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    return {
        # The broker does not say its version; the local stack runs the pom's.
        "kafka": f"{KAFKA_VERSION} (deploy/kafka/pom.xml)",
        "postgresql": postgres,
        "redis": str(info.get("redis_version")),
    }


def commit() -> dict[str, Any]:
    """The checkout's commit, and whether files differ from it (numbers of a dirty tree are
    not the commit's)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {
        "sha": git("rev-parse", "HEAD") or None,
        "subject": git("log", "-1", "--format=%s") or None,
        "changed_files": [path for path in changed if not path.startswith("bench/results/")],
    }
