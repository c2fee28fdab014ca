"""The infrastructure faults, acted out on a local stack's own processes.

- ``instance``: SIGKILL one service instance; the supervisor starts it again (as a
  container's restart policy would), and the run waits until it is ready;
- ``broker``: SIGKILL the broker, start it again at once (``Brokers``: which one; with a
  single broker there is no choice, with three it is the leader of most partitions);
- ``redis``: SIGKILL Redis, and start it again ``redis_down_s`` seconds later: empty, as it
  keeps nothing on disk, so the idempotency fast path forgets everything;
- ``postgres``: stop the cluster in immediate mode (every server process quits at once,
  no checkpoint, as in a crash: the restart replays the write-ahead log) and start it again.

Only on a stack whose part was started by ``python -m deploy.localstack up`` for this
profile: the servers of a deployment of yours are not ours to kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Protocol

from deploy.localstack.cluster import KafkaCluster, wait_for_broker
from deploy.localstack.component import Context
from deploy.localstack.postgres import PG_CTLCLUSTER, Postgres, _find_cluster
from deploy.localstack.processes import is_alive, run
from deploy.localstack.profiles import PROFILES, Profile
from deploy.localstack.record import StartedRecord
from deploy.localstack.redis import Redis
from deploy.localstack.supervisor import read_status

__all__ = ["INFRASTRUCTURE", "Brokers", "LocalStack", "StackBrokers", "unavailable_reason"]

INFRASTRUCTURE = {"broker": "kafka", "redis": "redis", "postgres": "postgres"}
"""Fault kind -> the local stack component it acts on."""
KILL_WAIT_S = 30.0
BROKER_RECOVERY_S = 300.0


def _sigkill(pid: int) -> None:
    """SIGKILL ``pid`` and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def unavailable_reason(profile: str, kind: str) -> str | None:
    """Why ``kind`` cannot be injected into the local stack of ``profile`` (None: it can)."""
    if profile not in PROFILES:
        return "not a local stack (no SAGAKIT_STACK_PROFILE in its stack.env)"
    record = StartedRecord(PROFILES[profile].state_dir)
    component = INFRASTRUCTURE.get(kind, "services")
    if record.how(component) != "started":
        return f"{component} of the {profile} stack was not started by it (it may be yours)"
    return None


class Brokers(Protocol):
    """The broker faults' victims: which to kill, how to kill it and start it again."""

    def victim(self) -> str:
        """The broker to kill next (an id for the report and the two calls below)."""
        ...

    def kill(self, victim: str) -> int:
        """SIGKILL it; its pid."""
        ...

    def restart(self, victim: str) -> None:
        """Start it again, and return once it answers."""
        ...


@dataclass(frozen=True)
class StackBrokers:
    """The local stack's brokers: its one broker, or the node of its KRaft cluster
    (``make up KAFKA_BROKERS=3``) that leads the most partitions."""

    profile: Profile

    def _cluster(self) -> KafkaCluster:
        return KafkaCluster.of_profile(self.profile)

    def victim(self) -> str:
        cluster = self._cluster()
        if len(cluster.nodes) == 1:
            return "broker 1"
        # Called from a worker thread (kill_broker): a loop of its own for the admin client.
        return f"broker {asyncio.run(cluster.leader_of_most_partitions())}"

    def kill(self, victim: str) -> int:
        cluster, node = self._cluster(), _node_id(victim)
        pid = cluster.pid(node)
        if pid is None:
            raise RuntimeError(f"{victim} of the {self.profile.name} stack is not running")
        cluster.kill(node)
        return pid

    def restart(self, victim: str) -> None:
        # The same properties and log dir. After a SIGKILL the broker checks every log
        # segment it had open before it answers: on a busy machine that takes a while.
        cluster = self._cluster()
        cluster.restart(_node_id(victim))
        wait_for_broker(cluster.client_options(), BROKER_RECOVERY_S)


def _node_id(victim: str) -> int:
    return int(victim.removeprefix("broker "))


class LocalStack:
    """The infrastructure faults on the local stack of one profile."""

    def __init__(self, profile: str, brokers: Brokers | None = None) -> None:
        self.ctx = Context(PROFILES[profile], {})
        self.brokers = brokers or StackBrokers(PROFILES[profile])

    async def kill_instance(self, name: str) -> dict[str, Any]:
        """SIGKILL instance ``name``; the supervisor restarts it."""
        entries = {str(e["name"]): e for e in read_status(self.ctx.state("services"))}
        pid = entries.get(name, {}).get("pid")
        if not isinstance(pid, int):
            raise RuntimeError(f"instance {name} is not running (supervisor status: {entries})")
        await asyncio.to_thread(_sigkill, pid)
        return {"target": name, "pid": pid}

    async def kill_broker(self) -> dict[str, Any]:
        victim = await asyncio.to_thread(self.brokers.victim)
        pid = await asyncio.to_thread(self.brokers.kill, victim)
        began = time.monotonic()
        await asyncio.to_thread(self.brokers.restart, victim)
        return {"target": victim, "pid": pid, "down_s": round(time.monotonic() - began, 1)}

    async def stop_redis(self, seconds: float) -> dict[str, Any]:
        pid = Redis().status(self.ctx)[0].pid
        if pid is None:
            raise RuntimeError("Redis is not running")
        await asyncio.to_thread(_sigkill, pid)
        began = time.monotonic()
        await asyncio.sleep(seconds)
        await asyncio.to_thread(Redis().start, self.ctx)
        return {"target": "redis", "pid": pid, "down_s": round(time.monotonic() - began, 1)}

    async def kill_postgres(self) -> dict[str, Any]:
        cluster = _find_cluster(self.ctx.profile.postgres_cluster)
        if cluster is None or not cluster.online:
            raise RuntimeError(f"cluster {self.ctx.profile.postgres_cluster} is not running")
        began = time.monotonic()
        await asyncio.to_thread(
            run,
            [*PG_CTLCLUSTER, "--mode", "immediate", cluster.version, cluster.name, "stop"],
            what=f"killing cluster {cluster.version}/{cluster.name}",
        )
        await asyncio.to_thread(Postgres().start, self.ctx)
        return {
            "target": f"postgres {cluster.version}/{cluster.name}",
            "pid": cluster.pid,
            "down_s": round(time.monotonic() - began, 1),
        }
