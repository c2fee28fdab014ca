"""Failure injection (docs/contract.md, "Failure injection"): a layer around the services.

Each service process keeps one in-memory ``FaultRegistry``. The admin API adds each
``FaultSpec`` to it; the wrappers below ask ``take(kind, key)`` (the key of the event in hand,
``Event.entity_key``) at the point where that failure belongs, and act when a fault comes
back. Nothing else knows of faults: the domain models hold the business rules alone, and a
deployment without failure injection (``SAGAKIT_FAULT_INJECTION=false``) has no registry, so
no wrapper is put in place at all.

- business kinds, through ``business_fault``: each service declares its own
  (``BusinessFault("decline")`` in the module of its drills) and its declaration wraps its
  decision rule, so that for an entity a fault fires for, the fault's outcome answers
  instead of the rule (the reference system's are in docs/contract.md);
- ``delay``, ``transient``, ``permanent``: asked by the consumer runner before every handler
  attempt through ``inject_before_handler``;
- ``crash``: asked by the consumer runner itself *after* the handler's database transaction
  has committed and *before* the Kafka offset is committed, and answered by ``os._exit``, so
  the record is redelivered and the idempotency machinery must skip it. It is not handled in
  ``inject_before_handler`` because it belongs at that precise point.

``count`` counts the times a fault fires (handler attempts, not events): a ``transient`` fault
with ``count`` below the runner's retry limit fails the first attempts and lets a later one
through.
"""

import asyncio
import functools
import random
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Concatenate, Final, ParamSpec, Protocol, Self, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator

from shared.contracts.errors import PermanentError, TransientError
from shared.contracts.text import StorableStr

__all__ = [
    "INFRASTRUCTURE_KINDS",
    "MAX_DELAY_MS",
    "ActiveFault",
    "BusinessFault",
    "FaultKind",
    "FaultRegistry",
    "FaultSpec",
    "Keyed",
    "business_fault",
    "inject_before_handler",
]


class FaultKind(StrEnum):
    """The platform's fault kinds, which every service accepts: they act on the consumer
    runner, not on a business rule."""

    transient = "transient"
    permanent = "permanent"
    crash = "crash"
    delay = "delay"


INFRASTRUCTURE_KINDS: Final[frozenset[str]] = frozenset(FaultKind)
"""Kinds every service accepts. A service's declaration adds the business kinds it accepts."""


class BusinessFault(str):
    """A fault kind a service declares for one of its business rules: ``BusinessFault("decline")``.

    Declared where the service's drills are, when that module is imported; a ``FaultSpec``
    names a declared kind or is refused (a typo is a 422, not a fault that never fires).
    """

    _declared: ClassVar[set[str]] = set()

    def __new__(cls, name: str) -> Self:
        if name in INFRASTRUCTURE_KINDS:
            raise ValueError(f"{name} is one of the platform's fault kinds, not a business one")
        kind = super().__new__(cls, name)
        cls._declared.add(name)
        return kind

    @classmethod
    def declared(cls) -> frozenset[str]:
        """Every business kind declared in this process."""
        return frozenset(cls._declared)


def _known_kind(kind: str) -> str:
    known = INFRASTRUCTURE_KINDS | BusinessFault.declared()
    if kind not in known:
        raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(sorted(known))})")
    return FaultKind(kind) if kind in INFRASTRUCTURE_KINDS else BusinessFault(kind)


MAX_DELAY_MS: Final = 600_000
"""The longest ``delay`` accepted (10 minutes): longer is surely a typo, and would stall a
partition well past any poll interval."""


KEYS = "keys"
"""The name of a fault's list of keys, unless its system names it (``FaultSpec.keyed_by``)."""


class FaultSpec(BaseModel):
    """The body of ``POST /faults``. Unknown fields are refused (a 422 from the API).

    The entities a fault applies to are ``keys`` (the keys of their events); in JSON a
    system names that list after its key (``keyed_by``: ``order_ids`` in the reference
    system, named from its catalogue by ``Platform.configure``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Annotated[str, AfterValidator(_known_kind)]
    rate: float = Field(default=1.0, ge=0.0, le=1.0, description="chance to fire, 0.0 to 1.0")
    count: int | None = Field(
        default=None, ge=1, description="how many times it fires; null: until deleted"
    )
    keys: list[StorableStr] | None = Field(
        default=None, min_length=1, description="the entities it applies to; null: any"
    )
    delay_ms: int = Field(
        default=0, ge=0, le=MAX_DELAY_MS, description="for kind delay: how long to sleep"
    )

    @model_validator(mode="after")
    def _delay_ms_goes_with_kind_delay(self) -> Self:
        if self.kind == FaultKind.delay and self.delay_ms == 0:
            raise ValueError("a delay fault needs delay_ms > 0")
        if self.kind != FaultKind.delay and self.delay_ms != 0:
            raise ValueError(f"delay_ms applies only to kind delay, not to {self.kind}")
        return self

    @classmethod
    def keyed_by(cls, name: str) -> type[Self]:
        """This model with its ``keys`` named ``name`` in JSON (one class per name)."""
        keyed: type[Self] = _keyed(cls, name)
        return keyed

    @classmethod
    def keys_name(cls) -> str:
        """What JSON calls this model's ``keys``."""
        return cls.model_fields["keys"].alias or KEYS


@functools.cache
def _keyed(model: type[FaultSpec], name: str) -> Any:
    if name == KEYS:
        return model
    keys = Field(
        default=None, min_length=1, alias=name, description="the entities it applies to; null: any"
    )
    return create_model(
        model.__name__,
        __base__=model,
        __module__=model.__module__,
        keys=(list[StorableStr] | None, keys),
    )


class ActiveFault(FaultSpec):
    """A fault in a registry: its spec, an ``id``, and how many firings it has ``remaining``
    (None: unlimited). What ``GET /faults`` lists."""

    id: str
    remaining: int | None

    def describe(self) -> dict[str, Any]:
        """The fault as a JSON-ready dict: the spec's fields, ``id`` and ``remaining``."""
        return self.model_dump(mode="json", by_alias=True)

    def applies_to(self, key: str | None) -> bool:
        """True when the fault covers the entity ``key`` (every one, or one of its keys)."""
        return self.keys is None or key in self.keys


class FaultRegistry:
    """The faults active in one service process.

    Only the kinds in ``allowed`` can be added. ``rng`` decides whether a fault with a
    ``rate`` below 1 fires: pass a seeded ``random.Random`` for repeatable tests.
    ``spec_type`` is what ``POST /faults`` reads (``FaultSpec.keyed_by``). Safe to use from the
    event loop and from threads (sync routes run in a thread pool).
    """

    def __init__(
        self,
        allowed: frozenset[str],
        *,
        rng: random.Random | None = None,
        spec_type: type[FaultSpec] = FaultSpec,
    ) -> None:
        self._allowed = frozenset(allowed)
        self.spec_type = spec_type
        self._rng = rng if rng is not None else random.Random()
        self._faults: list[ActiveFault] = []
        self._lock = threading.Lock()

    @property
    def allowed_kinds(self) -> frozenset[str]:
        """The kinds this registry accepts."""
        return self._allowed

    def add(self, spec: FaultSpec) -> ActiveFault:
        """Activate a fault; ``ValueError`` if its kind is not one this service accepts."""
        if spec.kind not in self._allowed:
            allowed = ", ".join(sorted(self._allowed))
            raise ValueError(
                f"fault kind '{spec.kind}' does not apply to this service: it accepts {allowed}"
            )
        active = ActiveFault.keyed_by(type(spec).keys_name())
        fields = spec.model_dump(by_alias=True)  # the names ``active`` reads: the same keys
        fault = active.model_validate(fields | {"id": str(uuid.uuid4()), "remaining": spec.count})
        with self._lock:
            self._faults.append(fault)
        return fault

    def active(self) -> list[ActiveFault]:
        """The active faults, oldest first."""
        with self._lock:
            return list(self._faults)

    def covers_any(self, keys: Iterable[str | None]) -> bool:
        """True when some active fault (of any kind) may fire for one of the entity ``keys``."""
        with self._lock:
            faults = list(self._faults)
        return any(fault.applies_to(key) for key in keys for fault in faults)

    def clear(self) -> int:
        """Remove every fault; returns how many there were."""
        with self._lock:
            removed = len(self._faults)
            self._faults.clear()
        return removed

    def take(self, kind: str, key: str | None) -> ActiveFault | None:
        """The first active fault of ``kind`` covering the entity ``key`` that fires, or None.

        Faults are tried oldest first; each fires with probability ``rate``. The one that fires
        has one firing fewer ``remaining`` (the returned copy shows the count after this one)
        and leaves the registry when none remain.
        """
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.kind != kind or not fault.applies_to(key):
                    continue
                if not self._fires(fault.rate):
                    continue
                if fault.remaining is None:
                    return fault
                fired = fault.model_copy(update={"remaining": fault.remaining - 1})
                if fired.remaining == 0:
                    del self._faults[index]
                else:
                    self._faults[index] = fired
                return fired
        return None

    def _fires(self, rate: float) -> bool:
        # No draw for the certain cases, so a rate-1 fault leaves the random sequence alone.
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        return self._rng.random() < rate


async def inject_before_handler(
    registry: FaultRegistry,
    key: str | None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Apply the faults that act before a handler attempt; the runner calls it every attempt.

    ``delay`` sleeps ``delay_ms`` first; then ``permanent`` raises ``PermanentError`` (the
    record goes to the DLQ), else ``transient`` raises ``TransientError`` (the runner retries).
    ``permanent`` is asked first because it is the stronger of the two: a ``transient`` fault is
    not used up by an attempt that is dead-lettered anyway. ``crash`` is not handled here (see
    the module docstring).
    """
    delay = registry.take(FaultKind.delay, key)
    if delay is not None:
        await sleep(delay.delay_ms / 1000)
    if registry.take(FaultKind.permanent, key) is not None:
        raise PermanentError("injected permanent fault")
    if registry.take(FaultKind.transient, key) is not None:
        raise TransientError("injected transient fault")


class Keyed(Protocol):
    """What a business rule decides about: something of one entity (an event, typically)."""

    @property
    def entity_key(self) -> str: ...


Subject = TypeVar("Subject", bound=Keyed)
Params = ParamSpec("Params")
Decision = TypeVar("Decision")


def business_fault(
    kind: str,
    registry: FaultRegistry | None,
    rule: Callable[Concatenate[Subject, Params], Decision],
    outcome: Callable[Concatenate[Subject, Params], Decision],
) -> Callable[Concatenate[Subject, Params], Decision]:
    """``rule``, except that for an entity a ``kind`` fault fires for, ``outcome`` decides.

    ``rule`` and ``outcome`` take the same arguments, the first being what is decided about
    (its ``entity_key`` picks the faults that apply). Without a registry (failure injection
    switched off) this is ``rule`` itself: nothing is asked, nothing wraps the rule.
    """
    if registry is None:
        return rule
    if kind not in registry.allowed_kinds:
        raise ValueError(f"this service does not accept {kind} faults: declare the kind")

    def decide(subject: Subject, /, *args: Params.args, **kwargs: Params.kwargs) -> Decision:
        if registry.take(kind, subject.entity_key) is not None:
            return outcome(subject, *args, **kwargs)
        return rule(subject, *args, **kwargs)

    return decide
