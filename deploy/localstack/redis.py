"""Redis: ``SAGAKIT_REDIS_URL`` when set, else our own redis-server (memory only, no disk,
bounded: ``REDIS_MAXMEMORY``, 256mb, least recently used keys evicted)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio

from deploy.localstack import ports
from deploy.localstack.component import Context, Plan, StatusRow
from deploy.localstack.errors import StackError
from deploy.localstack.prereqs import Needs
from deploy.localstack.processes import is_alive, running_pid, start_server, terminate
from deploy.localstack.profiles import HOST
from deploy.localstack.readiness import wait_until_answers

__all__ = ["DEFAULT_MAXMEMORY", "Redis", "ping", "redis_server_options"]

DEFAULT_MAXMEMORY = "256mb"
"""The stack's Redis memory bound, unless ``REDIS_MAXMEMORY`` says otherwise (``1gb``, ...)."""


def redis_server_options(*, port: int, folder: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """redis-server's options for the stack: memory only, bounded, evicting as a cache does.

    It holds the idempotency fast path alone (``shared.consuming.inbox``): every key is a shortcut
    the inbox table backs up, so when Redis is full the least recently used keys go
    (``allkeys-lru``) and a redelivery of their event costs one inbox lookup. Without a bound
    it grew with every event for as long as a key lived; at the bound without eviction
    (``noeviction``) it would refuse every new key. docs/operations.md says how to size it.
    """
    return {
        "bind": HOST,
        "port": str(port),
        # No RDB snapshots, no AOF: the stack's Redis holds nothing worth keeping.
        "save": "",
        "appendonly": "no",
        "maxmemory": environ.get("REDIS_MAXMEMORY") or DEFAULT_MAXMEMORY,
        "maxmemory-policy": "allkeys-lru",
        # In the foreground of its own session, like Kafka: we know its pid at once, and a
        # failure to listen shows as an exit instead of a wait for a deadline.
        "daemonize": "no",
        "dir": str(folder),
    }


async def ping(url: str) -> None:
    """One PING; raises unless Redis at ``url`` answers."""
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=5)
    try:
        await client.ping()
    finally:
        await client.aclose()


class Redis:
    """Redis for caches and idempotency keys."""

    name = "redis"

    def plan(self, ctx: Context) -> Plan:
        if url := ctx.environ.get("SAGAKIT_REDIS_URL"):
            parts = urlsplit(url)
            return Plan.yours(f"{parts.hostname}:{parts.port or 6379}")
        if self._pid(ctx):
            return Plan.running()
        hint = "stop that server, or set SAGAKIT_REDIS_URL to use it"
        return Plan.start(
            Needs(
                packages=() if shutil.which("redis-server") else ("redis-server",),
                ports=((ctx.profile.redis_port, hint),),
            )
        )

    def start(self, ctx: Context) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise StackError("redis-server not found: apt-get install -y redis-server")
        folder = ctx.state("redis")
        options = redis_server_options(
            port=ctx.profile.redis_port, folder=folder, environ=ctx.environ
        )
        argv = [server, *(word for name, value in options.items() for word in (f"--{name}", value))]
        pid = start_server(argv, folder, "redis")
        url = self.env(ctx)["SAGAKIT_REDIS_URL"]
        log = folder / "redis.log"
        wait_until_answers(
            f"Redis at {url}", lambda: ping(url), 20.0, alive=lambda: is_alive(pid), log=log
        )

    def ready(self, ctx: Context) -> None:
        url = self.env(ctx)["SAGAKIT_REDIS_URL"]
        wait_until_answers(f"Redis at {url}", lambda: ping(url), 20.0)

    def env(self, ctx: Context) -> dict[str, str]:
        url = ctx.environ.get("SAGAKIT_REDIS_URL") or f"redis://{HOST}:{ctx.profile.redis_port}/0"
        return {"SAGAKIT_REDIS_URL": url}

    def stop(self, ctx: Context) -> None:
        pid = self._pid(ctx)
        if pid:
            terminate(pid, "Redis")  # SIGTERM is Redis's own clean shutdown
        self._pidfile(ctx).unlink(missing_ok=True)
        ports.wait_until_free((ctx.profile.redis_port,), "Redis")

    def status(self, ctx: Context) -> list[StatusRow]:
        pid = self._pid(ctx)
        where = f"{HOST}:{ctx.profile.redis_port}"
        return [StatusRow(self.name, where, pid, "running" if pid else "stopped")]

    def _pidfile(self, ctx: Context) -> Path:
        return ctx.state("redis") / "redis.pid"

    def _pid(self, ctx: Context) -> int | None:
        return running_pid(self._pidfile(ctx), "redis-server")
