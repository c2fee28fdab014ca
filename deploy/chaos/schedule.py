"""When each infrastructure fault strikes: a plan made before the run, spread over it.

One round holds ``instance_kills`` kills of service instances (taken in turn) with one broker
kill, one Redis stop and one PostgreSQL kill between them; a run of ``rounds`` rounds spreads
them evenly over ``window_s`` seconds (the time the orders take to place), so every fault
meets sagas under way. Faults never overlap: the run waits until the system is back after
one before it strikes the next, so a late one is due at once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "ScheduledFault", "build_schedule"]

FAULT_KINDS = ("instance", "broker", "redis", "postgres")
_INFRASTRUCTURE = ("broker", "redis", "postgres")


@dataclass(frozen=True)
class ScheduledFault:
    at_s: float
    """Seconds after the first order is due."""
    kind: str
    target: str | None = None
    """The instance to kill, for ``instance``."""


def _round(instance_kills: int, kinds: Collection[str]) -> list[str]:
    """One round's kinds in order: the infrastructure faults between the instance kills."""
    infra = [kind for kind in _INFRASTRUCTURE if kind in kinds]
    kills = instance_kills if "instance" in kinds else 0
    order: list[str] = []
    for index in range(max(kills, len(infra))):
        if index < kills:
            order.append("instance")
        if index < len(infra):
            order.append(infra[index])
    return order


def build_schedule(
    window_s: float,
    *,
    rounds: int,
    instances: Sequence[str],
    instance_kills: int,
    kinds: Collection[str] = FAULT_KINDS,
) -> list[ScheduledFault]:
    """The run's faults in time order."""
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}: use {', '.join(FAULT_KINDS)}")
    if "instance" in kinds and not instances:
        raise ValueError("instance kills need instances to kill")
    plan = [kind for _ in range(rounds) for kind in _round(instance_kills, kinds)]
    slot = window_s / max(1, len(plan))
    faults, killed = [], 0
    for index, kind in enumerate(plan):
        target = None
        if kind == "instance":
            target, killed = instances[killed % len(instances)], killed + 1
        faults.append(ScheduledFault(round((index + 0.5) * slot, 1), kind, target))
    return faults
