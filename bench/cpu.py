"""CPU seconds each process of the system used during a scenario: which part was busy.

On a small machine everything competes for the same cores, so the split (order service,
payment, Kafka, PostgreSQL, the load generator itself...) says more than any throughput
figure about where the time goes. Read from ``/proc``; a process that is not found is left
out. PostgreSQL is many processes (one per connection): they are summed, with the time of
backends already gone that the server keeps for its children.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from bench.target import Target

__all__ = ["CpuMeter", "pid_in", "postgres_seconds", "process_seconds", "system_processes"]

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces; the fields after it never do.
    return stat[stat.rindex(")") + 2 :].split()


def process_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """User and system CPU seconds of ``pid`` (and of its reaped children, when asked)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # utime, stime, cutime, cstime are fields 14 to 17 of stat(5); the list starts at 3.
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS_PER_S


def postgres_seconds(cluster: str) -> float | None:
    """All CPU seconds of the PostgreSQL cluster whose processes name ``cluster``."""
    total, found = 0.0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cluster not in cmdline or "postgres" not in cmdline:
            continue
        # The postmaster (-D .../<cluster>) keeps the time of backends that have exited.
        seconds = process_seconds(int(entry.name), reaped_children=" -D " in cmdline)
        if seconds is not None:
            total, found = total + seconds, True
    return total if found else None


Reader = Callable[[], float | None]


def pid_in(path: Path) -> int | None:
    """The pid a pid file holds, or None when there is none to read."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def system_processes(target: Target, extra: Mapping[str, int]) -> dict[str, Reader]:
    """Readers for every process of ``target`` that can be found: its service instances, the
    local stack's Kafka, Redis and PostgreSQL, this process (the load generator, and the
    transport's relays), and ``extra`` (the synchronous chain's, while it runs)."""
    processes = target.instances() | target.companions()
    pids = {name: pid for name, pid in processes.items() if pid is not None}
    state = target.services_dir.parent
    for name in ("kafka", "redis"):
        if (pid := pid_in(state / name / f"{name}.pid")) is not None:
            pids[name] = pid
    pids |= {"bench": os.getpid(), **extra}
    readers: dict[str, Reader] = {name: partial(process_seconds, pid) for name, pid in pids.items()}
    if target.profile:
        readers["postgres"] = partial(postgres_seconds, f"/sagakit-{target.profile}")
    return readers


class CpuMeter:
    """Takes CPU readings of named processes; ``since`` gives each one's use since a reading."""

    def __init__(self, readers: Callable[[], Mapping[str, Reader]]) -> None:
        self._readers = readers

    def reading(self) -> dict[str, float]:
        values = {name: read() for name, read in self._readers().items()}
        return {name: value for name, value in values.items() if value is not None}

    def since(self, before: Mapping[str, float]) -> dict[str, float]:
        """CPU seconds used since ``before``; a process restarted meanwhile (less than
        before: a new pid under the same name) is left out."""
        now = self.reading()
        used = {name: now[name] - before[name] for name in now if name in before}
        return {name: round(value, 2) for name, value in used.items() if value >= 0}
