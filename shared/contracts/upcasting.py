"""Upcasters: the steps that turn an older version of an event into the one a consumer reads.

An event type's ``schema_version`` counts its breaking changes (a field that becomes
required, renamed or restructured); adding an optional field is not one, since readers
ignore fields they do not know. When a type goes from version N to N+1, its module registers
one upcaster for N -> N+1: a function from the raw JSON object of version N to that of N+1.
A consumer that reads version N of a type whose current version is M applies the steps
N -> N+1, ..., M-1 -> M in turn and validates the result against the current model, so
handlers only ever see current events, and producers still on an old version keep working.

This module knows nothing of the event models: ``shared.contracts.events`` owns one registry and
fills it next to the models whose versions it declares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shared.contracts.errors import NotAnEvent

__all__ = ["FIRST_VERSION", "RawEvent", "Upcaster", "UpcasterRegistry"]

FIRST_VERSION = 1
"""Every event type starts at version 1 (the version of every event written before versions
were read)."""

RawEvent = dict[str, Any]
"""An event's JSON object, parsed but not validated."""

Upcaster = Callable[[RawEvent], RawEvent]
"""One step: the raw event at version N in, the same event at version N + 1 out. It may
change its argument; ``schema_version`` is set by the registry, not by the step."""


class UpcasterRegistry:
    """The upcasters of every event type, one per (type, version it starts from)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorate the step from ``from_version`` to ``from_version + 1`` of ``event_type``."""
        if from_version < FIRST_VERSION:
            raise ValueError(f"versions start at {FIRST_VERSION}, not {from_version}")

        def add(step: Upcaster) -> Upcaster:
            key = (event_type, from_version)
            if key in self._steps:
                raise ValueError(f"{event_type} v{from_version} already has an upcaster")
            self._steps[key] = step
            return step

        return add

    def check(self, current_versions: Mapping[str, int]) -> None:
        """``ValueError`` unless every type can be read from version 1 up to its current one.

        Also refuses upcasters of unknown types or beyond a type's current version: a step
        nobody can reach is a version declared in the wrong place.
        """
        missing = [
            f"{event_type} v{version} -> v{version + 1}"
            for event_type, current in current_versions.items()
            for version in range(FIRST_VERSION, current)
            if (event_type, version) not in self._steps
        ]
        stray = [
            f"{event_type} v{version} -> v{version + 1}"
            for event_type, version in self._steps
            if version >= current_versions.get(event_type, FIRST_VERSION)
        ]
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if stray:
            problems.append(f"beyond the current version: {', '.join(stray)}")
        if problems:
            raise ValueError(
                f"upcasters do not match the declared schema versions: {'; '.join(problems)}"
            )

    def upcast(self, raw: RawEvent, event_type: str, version: int, target: int) -> RawEvent:
        """``raw``, an ``event_type`` at ``version``, brought up to ``target`` step by step.

        ``NotAnEvent`` when a step is missing (a version older than any this consumer reads)
        or fails: such a record is dead-lettered with the reason rather than misread.
        """
        for step_from in range(version, target):
            step = self._steps.get((event_type, step_from))
            if step is None:
                raise NotAnEvent(
                    f"{event_type} schema_version {version} is older than any this consumer "
                    f"reads (it reads {FIRST_VERSION} to {target})"
                )
            try:
                raw = step(raw)
            except Exception as error:  # an upcaster's bug or a v-N value it cannot map
                raise NotAnEvent(
                    f"{event_type} v{step_from} -> v{step_from + 1} upcaster failed: "
                    f"{type(error).__name__}: {error}"
                ) from error
            raw["schema_version"] = step_from + 1
        return raw
