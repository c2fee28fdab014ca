"""The reference system's services as a stack runs them, read from their declarations.

Nothing here names a service: ``services.declarations()`` finds every ``services/<name>/``,
and each one's place follows from it. A service declares the port it listens on alone
(order 8000, payment 8001, inventory 8002, shipping 8003); a profile runs it on the same
offset from its own first service port (the test stack's order on 18000, the benchmark's on
28000). Its database is ``sagakit_<name>``, given in ``SAGAKIT_<NAME>_DATABASE_URL``; where
it answers is ``SAGAKIT_<NAME>_URL``.

Some services run more than one instance, to show the load spread over a consumer group
(``SECOND_INSTANCES``): the extra instance takes the first offset no declaration claims, so
it never collides with a service added later.

A service may want a process beside it on a stack, for demos and tests: the notification
service a webhook receiver to deliver to. It declares it in its own folder, a
``services/<name>/companions.py`` whose ``COMPANIONS`` lists ``Companion``s; a stack runs each
one (``python -m services.<module> --port PORT``, answering ``GET /readyz``) on the ports left
after the instances, and hands the settings it names to the services (``{url}`` standing for
where it answers): nothing in ``deploy/`` names it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count

import services

__all__ = [
    "DECLARED_FIRST_PORT",
    "PORT_SLOTS",
    "SECOND_INSTANCES",
    "Companion",
    "CompanionSlot",
    "DeclaredService",
    "InstanceSlot",
    "companion_slots",
    "declared_companions",
    "declared_services",
    "instance_slots",
    "service_names",
]

DECLARED_FIRST_PORT = 8000
"""A declared port's offset is counted from here: the dev profile's first service port."""
PORT_SLOTS = 10
"""How many service ports a profile has room for (the chaos and chaos-test profiles' first
service ports lie 10 apart): declared services and extra instances together."""
SECOND_INSTANCES = ("payment",)
"""Services the stacks run twice, the second instance named ``<service>-2``."""


@dataclass(frozen=True)
class DeclaredService:
    """One service of ``services/``: its name and its port's offset."""

    name: str
    offset: int

    @property
    def port(self) -> int:
        """The port it declares: where it listens alone, and on the dev stack."""
        return DECLARED_FIRST_PORT + self.offset

    @property
    def database(self) -> str:
        return f"sagakit_{self.name}"

    @property
    def database_var(self) -> str:
        return f"SAGAKIT_{self.name.upper()}_DATABASE_URL"

    @property
    def url_var(self) -> str:
        return f"SAGAKIT_{self.name.upper()}_URL"


@dataclass(frozen=True)
class InstanceSlot:
    """One process a stack runs: its name, the service it runs and its port's offset."""

    name: str
    service: str
    offset: int


@dataclass(frozen=True)
class Companion:
    """A process a stack runs beside a service (see the module docstring)."""

    name: str
    """Its process's name (``make status``, its log), and its URL variable's."""
    module: str
    """What runs, under ``services``: ``python -m services.<module> --port PORT``."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """``SAGAKIT_*`` settings it gives the services, ``{url}`` standing for where it answers."""

    @property
    def url_var(self) -> str:
        return f"SAGAKIT_{self.name.upper().replace('-', '_')}_URL"

    def env(self, url: str) -> dict[str, str]:
        """Where it answers, and the settings it gives the services, when it answers at ``url``."""
        return {self.url_var: url} | {k: v.format(url=url) for k, v in self.settings.items()}


@dataclass(frozen=True)
class CompanionSlot:
    """A companion as a stack runs it: the service that declares it and its port's offset."""

    companion: Companion
    service: str
    offset: int


def declared_services() -> tuple[DeclaredService, ...]:
    """Every service under ``services/``, by declared port."""
    found = tuple(
        DeclaredService(d.name, d.port - DECLARED_FIRST_PORT) for d in services.declarations()
    )
    for service in found:
        if not 0 <= service.offset < PORT_SLOTS:
            first, last = DECLARED_FIRST_PORT, DECLARED_FIRST_PORT + PORT_SLOTS - 1
            raise ValueError(
                f"services/{service.name} declares port {DECLARED_FIRST_PORT + service.offset}: "
                f"the stacks have room for the ports {first}-{last} only"
            )
    return found


def service_names() -> tuple[str, ...]:
    """The names of every service under ``services/``, by declared port."""
    return tuple(service.name for service in declared_services())


def instance_slots() -> tuple[InstanceSlot, ...]:
    """Every process of the whole system: each service once, then the second instances."""
    declared = declared_services()
    own = [InstanceSlot(s.name, s.name, s.offset) for s in declared]
    taken = {s.offset for s in declared}
    spare = (offset for offset in count() if offset not in taken)
    names = {s.name for s in declared}
    extra = [InstanceSlot(f"{s}-2", s, next(spare)) for s in SECOND_INSTANCES if s in names]
    slots = (*own, *extra)
    if any(slot.offset >= PORT_SLOTS for slot in slots):
        raise ValueError(
            f"{len(slots)} instances do not fit the stacks' {PORT_SLOTS} service ports"
        )
    return slots


def declared_companions(service: str) -> Sequence[Companion]:
    """The ``COMPANIONS`` of ``services/<service>/companions.py``, none without one."""
    module = f"services.{service}.companions"
    if importlib.util.find_spec(module) is None:
        return ()
    companions: Sequence[Companion] = importlib.import_module(module).COMPANIONS
    return companions


def companion_slots() -> tuple[CompanionSlot, ...]:
    """Every companion, on the ports the instances leave, by its service's declared port."""
    taken = {slot.offset for slot in instance_slots()}
    spare = (offset for offset in count() if offset not in taken)
    slots = tuple(
        CompanionSlot(companion, service, next(spare))
        for service in service_names()
        for companion in declared_companions(service)
    )
    if any(slot.offset >= PORT_SLOTS for slot in slots):
        raise ValueError(
            f"the instances and {len(slots)} companion(s) do not fit the stacks' "
            f"{PORT_SLOTS} service ports"
        )
    return slots
