"""A system's event catalogue: its event types and their upcasters, handed to the platform.

The platform knows no event type of its own. A system lists its types once, in a
``Catalogue``, and hands that to what needs it: the topics (``shared.contracts.topics``: one
topic per type), the codec (``Catalogue.decode``, the single door from bytes to a typed
event: anything it rejects is not an event and goes to the dead-letter topic), the service
declaration (``shared.app.declaration``), the AsyncAPI builder and the ``sagakit`` command
line (``shared.ops.cli.config``).

``decode`` reads the version a record says: an older one is brought up to the current one by
the catalogue's upcasters, and a newer one than this code knows is refused, so it is
dead-lettered instead of being misread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, TypeVar, Union, overload

from pydantic import Field, TypeAdapter, ValidationError

from shared.contracts.errors import NotAnEvent
from shared.contracts.events import Event
from shared.contracts.upcasting import RawEvent, UpcasterRegistry

__all__ = ["Catalogue"]

EventT = TypeVar("EventT", bound=Event)


@dataclass(frozen=True, eq=False)
class Catalogue(Sequence[type[EventT]]):
    """Every event type of one system, in saga order (a sequence of them), and its upcasters.

    Checked when made: each type is concrete, names a key field it has, and each name is
    used once; every version between 1 and a type's current one has its upcaster.
    """

    types: tuple[type[EventT], ...]
    upcasters: UpcasterRegistry = field(default_factory=UpcasterRegistry)
    _decoder: TypeAdapter[EventT] = field(init=False, repr=False)
    _versions: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.types:
            raise ValueError("a catalogue needs at least one event type")
        versions: dict[str, int] = {}
        for cls in self.types:
            name = cls.type_name()
            if name in versions:
                raise ValueError(f"two event types are named {name}")
            key = getattr(cls, "key_field", None)
            if key is None or key not in cls.model_fields:
                raise ValueError(f"{name} names no key field of its own (Event.key_field)")
            versions[name] = cls.current_version()
        self.upcasters.check(versions)  # a version without its upcaster is a bug
        # A discriminated union of the types: pydantic picks the model by ``event_type`` in
        # one pass over the JSON.
        decoder: TypeAdapter[EventT] = (
            TypeAdapter(
                Annotated[Union[self.types], Field(discriminator="event_type")]  # type: ignore[arg-type]  # noqa: UP007
            )
            if len(self.types) > 1
            else TypeAdapter(self.types[0])  # a union of one is that type: nothing to pick
        )
        object.__setattr__(self, "_decoder", decoder)
        object.__setattr__(self, "_versions", versions)

    def __iter__(self) -> Iterator[type[EventT]]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)

    @overload
    def __getitem__(self, index: int) -> type[EventT]: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[type[EventT], ...]: ...
    def __getitem__(self, index: int | slice) -> type[EventT] | tuple[type[EventT], ...]:
        return self.types[index]

    @property
    def key_field(self) -> str | None:
        """The key field every type declares, when they all declare the same one."""
        fields = {cls.key_field for cls in self.types}
        return fields.pop() if len(fields) == 1 else None

    def type_names(self) -> tuple[str, ...]:
        """The ``event_type`` of every type, in the catalogue's order: one topic each."""
        return tuple(self._versions)

    def decode(self, value: bytes | None) -> EventT:
        """Turn a record value into a typed event, or raise ``NotAnEvent`` saying why not.

        A record of the current version is validated straight from its bytes, as fast as
        before versions were read; only one that fails, or says another version, is parsed
        to be looked at and, if older, upcast.
        """
        if value is None:
            raise NotAnEvent("the record has no value (a tombstone is not an event)")
        try:
            event = self._decoder.validate_json(value)
        except ValidationError as error:
            return self._upcast_or_refuse(value, error)
        current = self._versions[event.event_type]
        if event.schema_version != current:
            # It validated, but the record is another version: read what it says, as it says.
            raw = json.loads(value)
            return self._from_version(raw, event.event_type, event.schema_version, current)
        return event

    def _upcast_or_refuse(self, value: bytes, error: ValidationError) -> EventT:
        """An older event the current model refuses, upcast; anything else, ``NotAnEvent``."""
        try:
            raw = json.loads(value)
        except (ValueError, RecursionError):
            raise NotAnEvent(self._explain(error)) from error
        if isinstance(raw, dict):
            event_type, version = str(raw.get("event_type")), raw.get("schema_version")
            current = self._versions.get(event_type)
            # A bool is an int to Python, not a version to us.
            if current is not None and type(version) is int and version != current:
                return self._from_version(raw, event_type, version, current)
        raise NotAnEvent(self._explain(error)) from error

    def _from_version(self, raw: RawEvent, event_type: str, version: int, current: int) -> EventT:
        if version > current:
            raise NotAnEvent(
                f"{event_type} schema_version {version} is newer than this consumer knows "
                f"({current}): upgrade the consumer, then replay the dead letter"
            )
        upcast = self.upcasters.upcast(raw, event_type, version, current)
        try:
            # From JSON again, not from the dict: the same validation rules as the fast path.
            return self._decoder.validate_json(json.dumps(upcast))
        except ValidationError as error:
            raise NotAnEvent(
                f"{event_type} schema_version {version} upcast to {current}: {self._explain(error)}"
            ) from error

    def _explain(self, error: ValidationError) -> str:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
            return f"unknown or missing event_type (known: {', '.join(self._versions)})"
        if first["type"] == "json_invalid":
            return f"not a JSON object: {first['msg']}"
        return f"{where}: {first['msg']} ({error.error_count()} error(s) in all)"
