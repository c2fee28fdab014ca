"""Event contracts: the envelope, one frozen model per event type, and their wire form.

Every event travels as a UTF-8 JSON object keyed by its order id, so all events of one order
land in the same partition of each topic. ``decode`` is the single door from bytes to a typed
event: anything it rejects is not an event and goes to the dead-letter topic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from shared.errors import NotAnEvent
from shared.money import MoneyStr

if TYPE_CHECKING:  # shared.topics reads the catalogue from this module
    from shared.topics import Topics

__all__ = [
    "CATALOGUE",
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
    "encode",
    "event_headers",
]

SCHEMA_VERSION = 1


class Event(BaseModel):
    """The envelope every event carries; subclasses add their own fields.

    Unknown fields are ignored rather than refused (a tolerant reader), so a producer can add
    a field without breaking consumers that do not know it yet.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: str
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    schema_version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    order_id: str = Field(min_length=1)
    correlation_id: str = Field(min_length=1)
    causation_id: uuid.UUID | None = None
    producer: str = Field(min_length=1)

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
    event_type: Literal["OrderCreated"] = "OrderCreated"
    customer_id: str = Field(min_length=1)
    items: tuple[PricedLineItem, ...] = Field(min_length=1)
    total: MoneyStr


class PaymentProcessed(Event):
    event_type: Literal["PaymentProcessed"] = "PaymentProcessed"
    customer_id: str
    amount: MoneyStr
    items: tuple[LineItem, ...] = Field(min_length=1)


class PaymentFailed(Event):
    event_type: Literal["PaymentFailed"] = "PaymentFailed"
    customer_id: str
    amount: MoneyStr
    reason: str


class InventoryReserved(Event):
    event_type: Literal["InventoryReserved"] = "InventoryReserved"
    items: tuple[LineItem, ...] = Field(min_length=1)


class InventoryFailed(Event):
    event_type: Literal["InventoryFailed"] = "InventoryFailed"
    reason: str
    sku: str | None = None


class OrderShipped(Event):
    event_type: Literal["OrderShipped"] = "OrderShipped"
    tracking_id: str


class ShippingFailed(Event):
    event_type: Literal["ShippingFailed"] = "ShippingFailed"
    reason: str


class PaymentRefunded(Event):
    event_type: Literal["PaymentRefunded"] = "PaymentRefunded"
    customer_id: str
    amount: MoneyStr


class InventoryReleased(Event):
    event_type: Literal["InventoryReleased"] = "InventoryReleased"
    items: tuple[LineItem, ...] = Field(min_length=1)


class OrderCompleted(Event):
    event_type: Literal["OrderCompleted"] = "OrderCompleted"
    customer_id: str
    total: MoneyStr


class OrderCancelled(Event):
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
(shared.topics), the decoder below and the order service's timeline all follow from it."""

# A discriminated union of the catalogue, built from it so that no second list exists:
# pydantic picks the model by ``event_type`` in one pass over the JSON.
_any_event: TypeAdapter[Event] = TypeAdapter(
    Annotated[Union[CATALOGUE], Field(discriminator="event_type")]  # type: ignore[arg-type]  # noqa: UP007
)
_KNOWN_TYPES = ", ".join(cls.type_name() for cls in CATALOGUE)


def decode(value: bytes | None) -> Event:
    """Turn a record value into a typed event, or raise ``NotAnEvent`` saying why not."""
    if value is None:
        raise NotAnEvent("the record has no value (a tombstone is not an event)")
    try:
        return _any_event.validate_json(value)
    except ValidationError as error:
        raise NotAnEvent(_explain(error)) from error


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


def encode(event: Event, topics: Topics, traceparent: str | None = None) -> Record:
    """The record that carries ``event``: on its type's topic, keyed by its order id."""
    return Record(
        topic=topics.for_event(event.event_type),
        key=event.order_id.encode(),
        value=event.to_json(),
        headers=event_headers(event, traceparent),
    )
