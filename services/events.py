"""The reference system's event catalogue: the order saga's events, keyed by the order id.

The platform (``shared``) knows no event type: this module declares the order saga's, one
frozen model per type, and hands them to the platform as ``CATALOGUE`` (a
``shared.contracts.catalogue.Catalogue``), which the services' declarations, their topics,
the AsyncAPI document (``services.asyncapi``) and the ``sagakit`` command line receive. It is
not a service: every service imports it (tests/unit/test_layers.py allows that one import).

The wire form is that of docs/events.md: the envelope's head, ``order_id`` (the record's
key), the saga fields, then each event's own fields.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.catalogue import Catalogue
from shared.contracts.events import Envelope, Event
from shared.contracts.money import MoneyStr
from shared.contracts.upcasting import RawEvent, UpcasterRegistry

__all__ = [
    "CATALOGUE",
    "EVENT_TYPES",
    "UNKNOWN_CARRIER",
    "UPCASTERS",
    "InventoryFailed",
    "InventoryReleased",
    "InventoryReserved",
    "LineItem",
    "OrderCancelled",
    "OrderCompleted",
    "OrderCreated",
    "OrderEvent",
    "OrderShipped",
    "PaymentFailed",
    "PaymentProcessed",
    "PaymentRefunded",
    "PricedLineItem",
    "ShippingFailed",
    "decode",
]


class _OrderKey(Envelope):
    order_id: str = Field(min_length=1, description="The order; also the record's key.")


class OrderEvent(Event, _OrderKey):
    """An event of the order saga: about one order, keyed by its id.

    ``_OrderKey`` comes after ``Event`` in the bases so that ``order_id`` sits between the
    envelope's head and the saga fields, where version 1 of the contract put it.
    """

    key_field: ClassVar[str] = "order_id"

    correlation_id: str = Field(min_length=1, description="The saga: the order id.")


class LineItem(BaseModel):
    """A quantity of one sku, as stock sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1)


class PricedLineItem(LineItem):
    """A line of an order: a quantity of one sku at a unit price."""

    unit_price: MoneyStr


class OrderCreated(OrderEvent):
    """An order was taken: its saga starts (the order service)."""

    event_type: Literal["OrderCreated"] = "OrderCreated"
    customer_id: str = Field(min_length=1)
    items: tuple[PricedLineItem, ...] = Field(min_length=1)
    total: MoneyStr


class PaymentProcessed(OrderEvent):
    """The order's total was charged to the customer (the payment service)."""

    event_type: Literal["PaymentProcessed"] = "PaymentProcessed"
    customer_id: str
    amount: MoneyStr
    items: tuple[LineItem, ...] = Field(min_length=1)


class PaymentFailed(OrderEvent):
    """The charge was declined, with the reason (the payment service)."""

    event_type: Literal["PaymentFailed"] = "PaymentFailed"
    customer_id: str
    amount: MoneyStr
    reason: str


class InventoryReserved(OrderEvent):
    """The order's stock is held for it (the inventory service)."""

    event_type: Literal["InventoryReserved"] = "InventoryReserved"
    items: tuple[LineItem, ...] = Field(min_length=1)


class InventoryFailed(OrderEvent):
    """The stock could not be held, with the reason and the sku (the inventory service)."""

    event_type: Literal["InventoryFailed"] = "InventoryFailed"
    reason: str
    sku: str | None = None


class OrderShipped(OrderEvent):
    """The parcel left (the shipping service).

    Version 2 names the carrier; version 1 had only the tracking id, and is read as version
    2 with the carrier "unknown".
    """

    event_type: Literal["OrderShipped"] = "OrderShipped"
    schema_version: int = 2
    tracking_id: str = Field(description="The parcel's tracking id at its carrier.")
    carrier: str = Field(min_length=1, description="Who carries the parcel (since version 2).")


class ShippingFailed(OrderEvent):
    """The parcel could not be sent, with the reason (the shipping service)."""

    event_type: Literal["ShippingFailed"] = "ShippingFailed"
    reason: str


class PaymentRefunded(OrderEvent):
    """A charge was given back after a later step failed (the payment service)."""

    event_type: Literal["PaymentRefunded"] = "PaymentRefunded"
    customer_id: str
    amount: MoneyStr


class InventoryReleased(OrderEvent):
    """Held stock was given back after shipping failed (the inventory service)."""

    event_type: Literal["InventoryReleased"] = "InventoryReleased"
    items: tuple[LineItem, ...] = Field(min_length=1)


class OrderCompleted(OrderEvent):
    """The order's saga ended with the parcel shipped (the order service)."""

    event_type: Literal["OrderCompleted"] = "OrderCompleted"
    customer_id: str
    total: MoneyStr


class OrderCancelled(OrderEvent):
    """The order's saga ended without it, every compensation done (the order service)."""

    event_type: Literal["OrderCancelled"] = "OrderCancelled"
    reason: str


_TYPES: tuple[type[OrderEvent], ...] = (
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

UNKNOWN_CARRIER = "unknown"
"""The carrier of an ``OrderShipped`` written at version 1, which did not name one."""

UPCASTERS = UpcasterRegistry()
"""Every event type's steps from its older versions to its current one."""


@UPCASTERS.register(OrderShipped.type_name(), from_version=1)
def _order_shipped_names_its_carrier(raw: RawEvent) -> RawEvent:
    # A shipper still on v1 says nothing of the carrier: say so rather than guess one.
    raw.setdefault("carrier", UNKNOWN_CARRIER)
    return raw


CATALOGUE = Catalogue(_TYPES, UPCASTERS)
"""Every event type, in saga order: the one list to extend with a new type. Its topics, the
decoder and the order service's timeline all follow from it."""

EVENT_TYPES: tuple[str, ...] = CATALOGUE.type_names()
"""The ``event_type`` of every event of the catalogue, in its order: one topic each."""

decode = CATALOGUE.decode
"""A record value to a typed event of the catalogue, or ``NotAnEvent``."""
