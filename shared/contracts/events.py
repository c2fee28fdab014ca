"""Event contracts: the envelope, one frozen model per event type, and their wire form.

Every event travels as a UTF-8 JSON object keyed by its order id, so all events of one order
land in the same partition of each topic. ``decode`` is the single door from bytes to a typed
event: anything it rejects is not an event and goes to the dead-letter topic.

Each event type declares its current ``schema_version`` (the default of that field; 1 unless
the class says otherwise). ``decode`` reads what the record says: an older version is
brought up to the current one by the upcasters registered here (``shared.contracts.upcasting``), and
a newer one than this code knows is refused, so it is dead-lettered instead of being misread.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from shared.contracts.errors import NotAnEvent
from shared.contracts.money import MoneyStr
from shared.contracts.upcasting import RawEvent, UpcasterRegistry

__all__ = [
    "CATALOGUE",
    "UNKNOWN_CARRIER",
    "UPCASTERS",
    "Event",
    "InventoryFailed",
    "InventoryReleased",
    "InventoryReserved",
    "LineItem",
    "OrderCancelled",
    "OrderCompleted",
    "OrderCreated",
    "OrderShipped",
    "PaymentFailed",
    "PaymentProcessed",
    "PaymentRefunded",
    "PricedLineItem",
    "Record",
    "ShippingFailed",
    "decode",
    "event_headers",
]

SCHEMA_VERSION = 1
"""The version of every event type that does not declare another."""


class Event(BaseModel):
    """The envelope every event carries; subclasses add their own fields.

    Unknown fields are ignored rather than refused (a tolerant reader), so a producer can add
    a field without breaking consumers that do not know it yet.
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
    order_id: str = Field(min_length=1, description="The order; also the record's key.")
    correlation_id: str = Field(min_length=1, description="The saga: the order id.")
    causation_id: uuid.UUID | None = Field(
        default=None, description="The event_id of the event that caused this one (null: none)."
    )
    producer: str = Field(min_length=1, description="The service that wrote the event.")

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must carry a time zone (RFC 3339)")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC
            raise ValueError("occurred_at is outside the years 1 to 9999 in UTC") from None

    @classmethod
    def first(cls, *, order_id: str, producer: str, **fields: Any) -> Self:
        """The event that starts a saga: it is its own correlation and has no cause."""
        return cls(order_id=order_id, correlation_id=order_id, producer=producer, **fields)

    @classmethod
    def caused_by(cls, cause: Event, *, producer: str, **fields: Any) -> Self:
        """An event reacting to ``cause``: same order and saga, caused by that event."""
        return cls(
            order_id=cause.order_id,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            producer=producer,
            **fields,
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


class LineItem(BaseModel):
    """A quantity of one sku, as stock sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1)


class PricedLineItem(LineItem):
    """A line of an order: a quantity of one sku at a unit price."""

    unit_price: MoneyStr


class OrderCreated(Event):
    """An order was taken: its saga starts (the order service)."""

    event_type: Literal["OrderCreated"] = "OrderCreated"
    customer_id: str = Field(min_length=1)
    items: tuple[PricedLineItem, ...] = Field(min_length=1)
    total: MoneyStr


class PaymentProcessed(Event):
    """The order's total was charged to the customer (the payment service)."""

    event_type: Literal["PaymentProcessed"] = "PaymentProcessed"
    customer_id: str
    amount: MoneyStr
    items: tuple[LineItem, ...] = Field(min_length=1)


class PaymentFailed(Event):
    """The charge was declined, with the reason (the payment service)."""

    event_type: Literal["PaymentFailed"] = "PaymentFailed"
    customer_id: str
    amount: MoneyStr
    reason: str


class InventoryReserved(Event):
    """The order's stock is held for it (the inventory service)."""

    event_type: Literal["InventoryReserved"] = "InventoryReserved"
    items: tuple[LineItem, ...] = Field(min_length=1)


class InventoryFailed(Event):
    """The stock could not be held, with the reason and the sku (the inventory service)."""

    event_type: Literal["InventoryFailed"] = "InventoryFailed"
    reason: str
    sku: str | None = None


class OrderShipped(Event):
    """The parcel left (the shipping service).

    Version 2 names the carrier; version 1 had only the tracking id, and is read as version
    2 with the carrier "unknown".
    """

    event_type: Literal["OrderShipped"] = "OrderShipped"
    schema_version: int = 2
    tracking_id: str = Field(description="The parcel's tracking id at its carrier.")
    carrier: str = Field(min_length=1, description="Who carries the parcel (since version 2).")


class ShippingFailed(Event):
    """The parcel could not be sent, with the reason (the shipping service)."""

    event_type: Literal["ShippingFailed"] = "ShippingFailed"
    reason: str


class PaymentRefunded(Event):
    """A charge was given back after a later step failed (the payment service)."""

    event_type: Literal["PaymentRefunded"] = "PaymentRefunded"
    customer_id: str
    amount: MoneyStr


class InventoryReleased(Event):
    """Held stock was given back after shipping failed (the inventory service)."""

    event_type: Literal["InventoryReleased"] = "InventoryReleased"
    items: tuple[LineItem, ...] = Field(min_length=1)


class OrderCompleted(Event):
    """The order's saga ended with the parcel shipped (the order service)."""

    event_type: Literal["OrderCompleted"] = "OrderCompleted"
    customer_id: str
    total: MoneyStr


class OrderCancelled(Event):
    """The order's saga ended without it, every compensation done (the order service)."""

    event_type: Literal["OrderCancelled"] = "OrderCancelled"
    reason: str


CATALOGUE: tuple[type[Event], ...] = (
    OrderCreated,
    PaymentProcessed,
    PaymentFailed,
    InventoryReserved,
    InventoryFailed,
    OrderShipped,
    ShippingFailed,
    PaymentRefunded,
    InventoryReleased,
    OrderCompleted,
    OrderCancelled,
)
"""Every event type, in saga order: the one list to extend with a new type. Its topics
(shared.contracts.topics), the decoder below and the order service's timeline all follow from it."""

# A discriminated union of the catalogue, built from it so that no second list exists:
# pydantic picks the model by ``event_type`` in one pass over the JSON.
_any_event: TypeAdapter[Event] = TypeAdapter(
    Annotated[Union[CATALOGUE], Field(discriminator="event_type")]  # type: ignore[arg-type]  # noqa: UP007
)
_KNOWN_TYPES = ", ".join(cls.type_name() for cls in CATALOGUE)

UNKNOWN_CARRIER = "unknown"
"""The carrier of an ``OrderShipped`` written at version 1, which did not name one."""

UPCASTERS = UpcasterRegistry()
"""Every event type's steps from its older versions to its current one."""


@UPCASTERS.register(OrderShipped.type_name(), from_version=1)
def _order_shipped_names_its_carrier(raw: RawEvent) -> RawEvent:
    # A shipper still on v1 says nothing of the carrier: say so rather than guess one.
    raw.setdefault("carrier", UNKNOWN_CARRIER)
    return raw


_CURRENT_VERSIONS: dict[str, int] = {cls.type_name(): cls.current_version() for cls in CATALOGUE}
UPCASTERS.check(_CURRENT_VERSIONS)  # at import: a version without its upcaster is a bug


def decode(value: bytes | None) -> Event:
    """Turn a record value into a typed event, or raise ``NotAnEvent`` saying why not.

    A record of the current version is validated straight from its bytes, as fast as before
    versions were read; only one that fails, or says another version, is parsed to be looked
    at and, if older, upcast.
    """
    if value is None:
        raise NotAnEvent("the record has no value (a tombstone is not an event)")
    try:
        event = _any_event.validate_json(value)
    except ValidationError as error:
        return _upcast_or_refuse(value, error)
    current = _CURRENT_VERSIONS[event.event_type]
    if event.schema_version != current:
        # It validated, but the record is another version: read what it says, as it says it.
        raw = json.loads(value)
        return _from_version(raw, event.event_type, event.schema_version, current)
    return event


def _upcast_or_refuse(value: bytes, error: ValidationError) -> Event:
    """An older event that the current model refuses, upcast; anything else, ``NotAnEvent``."""
    try:
        raw = json.loads(value)
    except (ValueError, RecursionError):
        raise NotAnEvent(_explain(error)) from error
    if isinstance(raw, dict):
        event_type, version = str(raw.get("event_type")), raw.get("schema_version")
        current = _CURRENT_VERSIONS.get(event_type)
        # A bool is an int to Python, not a version to us.
        if current is not None and type(version) is int and version != current:
            return _from_version(raw, event_type, version, current)
    raise NotAnEvent(_explain(error)) from error


def _from_version(raw: RawEvent, event_type: str, version: int, current: int) -> Event:
    if version > current:
        raise NotAnEvent(
            f"{event_type} schema_version {version} is newer than this consumer knows "
            f"({current}): upgrade the consumer, then replay the dead letter"
        )
    upcast = UPCASTERS.upcast(raw, event_type, version, current)
    try:
        # From JSON again, not from the dict: the same validation rules as the fast path.
        return _any_event.validate_json(json.dumps(upcast))
    except ValidationError as error:
        raise NotAnEvent(
            f"{event_type} schema_version {version} upcast to {current}: {_explain(error)}"
        ) from error


def _explain(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"unknown or missing event_type (known: {_KNOWN_TYPES})"
    if first["type"] == "json_invalid":
        return f"not a JSON object: {first['msg']}"
    return f"{where}: {first['msg']} ({error.error_count()} error(s) in all)"


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
