"""The shape every part of the stack has; adding a part is one module with one such class.

``up`` first asks every component for its :class:`Plan`, checks the needs of those it will
start (all at once, before anything starts), starts them in order, then waits until every
component answers. ``down`` stops, in reverse order, exactly those ``up`` started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from deploy.localstack.cluster import Topology
from deploy.localstack.prereqs import Needs
from deploy.localstack.profiles import Profile

__all__ = ["Component", "Context", "Plan", "StatusRow"]


@dataclass(frozen=True)
class Context:
    """What a component works with: the profile and the environment that may name existing
    infrastructure (``SAGAKIT_KAFKA_BOOTSTRAP``...).

    The test fixture passes an empty ``environ``: a shell that sourced ``.stack/stack.env``
    must not point the test suite at the dev stack.
    """

    profile: Profile
    environ: Mapping[str, str]
    kafka: Topology | None = None
    """The Kafka topology ``up`` was asked for; None: whatever runs, else one plain broker."""

    def state(self, *parts: str) -> Path:
        """A path under the profile's state dir."""
        return self.profile.state_dir.joinpath(*parts)


@dataclass(frozen=True)
class Plan:
    """What ``up`` will do with one component, decided before anything starts."""

    action: Literal["start", "running", "yours", "none"]
    detail: str = ""
    """For ``yours``: where it is; for ``none``: why nothing happens."""
    needs: Needs = field(default_factory=Needs)

    @classmethod
    def start(cls, needs: Needs) -> Plan:
        return cls("start", needs=needs)

    @classmethod
    def running(cls) -> Plan:
        return cls("running")

    @classmethod
    def yours(cls, where: str) -> Plan:
        return cls("yours", detail=where)

    @property
    def outcome(self) -> str:
        """The word ``up`` prints once the component answers."""
        return {
            "start": "started",
            "running": "already running",
            "yours": f"using yours ({self.detail})",
            "none": self.detail,
        }[self.action]


@dataclass(frozen=True)
class StatusRow:
    """One line of ``status``."""

    component: str
    where: str
    pid: int | None
    state: str


class Component(Protocol):
    """One part of the stack (Kafka, PostgreSQL, Redis; later the services)."""

    name: str

    def plan(self, ctx: Context) -> Plan:
        """Use the user's endpoint, find ours already running, or plan to start it."""
        ...

    def start(self, ctx: Context) -> None:
        """Start it and return once it answers."""
        ...

    def ready(self, ctx: Context) -> None:
        """Return once it answers and holds what the stack needs (roles, databases...)."""
        ...

    def env(self, ctx: Context) -> dict[str, str]:
        """Its lines of stack.env."""
        ...

    def stop(self, ctx: Context) -> None:
        """Stop what ``start`` started, leaving no process and no listening port."""
        ...

    def status(self, ctx: Context) -> list[StatusRow]:
        """Where it runs and whether it does (the local copy; ``yours`` is shown by the stack)."""
        ...
