"""The envelope every event carries, and the record form it travels in.

The platform knows no event type: a system declares its own as subclasses of ``Event``, each
naming the field that identifies its entity (``key_field``), and hands them to the platform as
a ``shared.contracts.catalogue.Catalogue``. Every event travels as a UTF-8 JSON object keyed
by that entity's id, so all events of one entity land in the same partition of each topic.

Each event type declares its current ``schema_version`` (the default of that field; 1 unless
the class says otherwise); the catalogue's decoder reads what the record says and brings an
older version up to the current one (``shared.contracts.upcasting``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SCHEMA_VERSION", "Envelope", "Event", "Record", "event_headers"]

SCHEMA_VERSION = 1
"""The version of every event type that does not declare another."""


class Envelope(BaseModel):
    """The head of every event: what it is, its id, its version and when it happened.

    Unknown fields are ignored rather than refused (a tolerant reader), so a producer can add
    a field without breaking consumers that do not know it yet. A system whose wire form puts
    its key right after the head declares the key on a model of ``Envelope`` and lists it
    after ``Event`` in its base event's bases (pydantic orders the fields by that).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    # The descriptions are the contract's words (docs/events.md): docs/asyncapi.yaml shows them.
    event_type: str = Field(description="The type of the event: which model the value is.")
    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Unique per event: consumers deduplicate on it."
    )
    schema_version: int = Field(
        default=SCHEMA_VERSION,
        description="The version of this event type's schema the producer wrote.",
    )
    occurred_at: datetime = Field(
        default_factory=lambda: datetime.now(UTC), description="When it happened (RFC 3339, UTC)."
    )

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must carry a time zone (RFC 3339)")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC
            raise ValueError("occurred_at is outside the years 1 to 9999 in UTC") from None


class Event(Envelope):
    """An event of a saga: the envelope, its saga and cause, and the entity it is about.

    A concrete system's base event sets ``key_field`` to the name of its entity's id field
    (a ``str`` field it declares): the record's key, what replay filters and dead-letter
    indexes look events up by, and what logs and traces name the event's entity with.
    """

    key_field: ClassVar[str]
    """The name of the field holding the id of the entity the event is about."""

    correlation_id: str = Field(min_length=1, description="The saga: the entity's id.")
    causation_id: uuid.UUID | None = Field(
        default=None, description="The event_id of the event that caused this one (null: none)."
    )
    producer: str = Field(min_length=1, description="The service that wrote the event.")

    @property
    def entity_key(self) -> str:
        """The id of the entity the event is about (the value of its ``key_field``)."""
        key = getattr(self, type(self).key_field)
        if not isinstance(key, str):
            raise TypeError(f"{type(self).__name__}.{type(self).key_field} is not a str")
        return key

    @classmethod
    def entity_name(cls) -> str:
        """The entity in words, for log lines: the key field without its ``_id``."""
        return cls.key_field.removesuffix("_id")

    @classmethod
    def first(cls, *, producer: str, **fields: Any) -> Self:
        """The event that starts a saga: it is its own correlation (its entity's id) and has
        no cause. ``fields`` include the key field."""
        if cls.key_field not in fields:
            raise TypeError(f"{cls.__name__}.first needs its key, {cls.key_field}")
        return cls(correlation_id=fields[cls.key_field], producer=producer, **fields)

    @classmethod
    def caused_by(cls, cause: Event, *, producer: str, **fields: Any) -> Self:
        """An event reacting to ``cause``: same entity and saga, caused by that event."""
        return cls(
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            producer=producer,
            **{cls.key_field: cause.entity_key, **fields},
        )

    @classmethod
    def type_name(cls) -> str:
        """The ``event_type`` of this class, without an instance."""
        default = cls.model_fields["event_type"].default
        if not isinstance(default, str):
            raise TypeError(f"{cls.__name__} is not a concrete event type")
        return default

    @classmethod
    def current_version(cls) -> int:
        """The ``schema_version`` this code writes for this type, and the newest it reads."""
        default = cls.model_fields["schema_version"].default
        if not isinstance(default, int):
            raise TypeError(f"{cls.__name__} declares no schema_version")
        return default

    def to_json(self) -> bytes:
        """The record value: the envelope, then the event's own fields."""
        return self.model_dump_json().encode()


@dataclass(frozen=True, slots=True)
class Record:
    """An event in the form a Kafka producer sends it."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def event_headers(event: Event, traceparent: str | None = None) -> tuple[tuple[str, bytes], ...]:
    """The record headers of docs/events.md: event type and id, and the trace when one is active."""
    headers = [
        ("event_type", event.event_type.encode()),
        ("event_id", str(event.event_id).encode()),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return tuple(headers)
