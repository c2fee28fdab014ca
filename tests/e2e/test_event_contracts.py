"""Event contracts on the running system: old versions still work, newer ones are refused.

``OrderShipped`` is at version 2 (it names its carrier). A shipper still on version 1 must
not break the saga: its event is upcast and the order completes. An event of a version no
consumer knows yet must not be misread: every group that reads its topic dead-letters it,
saying why. And each service serves the AsyncAPI document of all of this.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.asyncapi import reference_services
from services.events import UNKNOWN_CARRIER, InventoryReserved, OrderShipped, decode
from shared.app.asyncapi import DOCUMENT
from shared.publishing.producer import build_producer
from shared.settings import PlatformSettings
from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import (
    Ledger,
    dead_letters,
    eventually,
    instances,
    settled_stock,
    settled_timeline,
    unique,
    wait_terminal,
)

Json = dict[str, Any]


class Publisher:
    """Writes hand-made record values to the session's topics, as another producer would."""

    def __init__(self, system: RunningSystem, producer: Any) -> None:
        self.system = system
        self.producer = producer

    async def publish(self, topic: str, body: Json) -> bytes:
        value = json.dumps(body).encode()
        headers = [
            ("event_type", body["event_type"].encode()),
            ("event_id", body["event_id"].encode()),
        ]
        await self.producer.send_and_wait(
            self.system.topic(topic), value, key=body["order_id"].encode(), headers=headers
        )
        return value


@pytest.fixture
async def publisher(system: RunningSystem) -> AsyncIterator[Publisher]:
    producer = build_producer(PlatformSettings(kafka_bootstrap=system.kafka_bootstrap))
    await producer.start()
    try:
        yield Publisher(system, producer)
    finally:
        await producer.stop()


def order_shipped(order_id: str, cause: InventoryReserved | None, version: int) -> Json:
    """An ``OrderShipped`` value built by hand: version 1 has no carrier, later ones do."""
    body: Json = {
        "event_type": "OrderShipped",
        "event_id": str(uuid.uuid4()),
        "schema_version": version,
        "occurred_at": datetime.now(UTC).isoformat(),
        "order_id": order_id,
        "correlation_id": cause.correlation_id if cause else order_id,
        "causation_id": str(cause.event_id) if cause else None,
        "producer": "shipping",
        "tracking_id": f"TRK-V{version}",
    }
    if version > 1:
        body["carrier"] = "future-post"
    return body


async def test_an_order_shipped_from_a_shipper_still_on_version_1_completes_the_saga(
    system: RunningSystem, publisher: Publisher
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("v1-shipper", "100.00")
    sku = await ledger.sku("v1-shipper", 10)
    # Today's shipper is kept out of this order: it dead-letters the order's InventoryReserved
    # (placed before the order, whose id is not known yet), so the order's only OrderShipped
    # is the version 1 one written below, as the old shipper wrote them.
    await client.add_fault(client.urls.shipping, "permanent", count=1)
    order_id = (await ledger.place(customer, [(sku, 2, "5.00")]))["order_id"]
    letters = await dead_letters(
        system.kafka_bootstrap, system.topic("inventory-reserved-dlq"), order_id
    )
    assert len(letters) == 1, f"the InventoryReserved of {order_id} was not dead-lettered"
    reserved = decode(letters[0].value)
    assert isinstance(reserved, InventoryReserved)
    await eventually(
        lambda: client.order(order_id),
        lambda order: order["status"] == "RESERVED",
        what="order RESERVED, waiting for its shipment",
    )

    v1 = order_shipped(order_id, reserved, version=1)
    await publisher.publish("order-shipped", v1)

    done = await wait_terminal(client, order_id)
    assert (done["status"], done["cancel_reason"]) == ("COMPLETED", None)
    stock = await settled_stock(client, sku)
    assert (stock["available"], stock["reserved"], stock["shipped"]) == (8, 0, 2)
    assert await client.balance(customer) == Decimal("90.00")
    timeline = await settled_timeline(client, order_id)
    shipped = [event for event in timeline if event["event_type"] == "OrderShipped"]
    # The read model holds the event as the consumer read it: upcast to version 2.
    assert len(shipped) == 1
    assert shipped[0]["event_id"] == v1["event_id"]
    assert (shipped[0]["schema_version"], shipped[0]["carrier"]) == (2, UNKNOWN_CARRIER)
    assert shipped[0]["tracking_id"] == "TRK-V1"


async def test_an_order_shipped_of_a_version_no_consumer_knows_is_dead_lettered_saying_why(
    system: RunningSystem, publisher: Publisher
) -> None:
    order_id = unique("v99")
    # Valid in every field today's consumers know: without the version check it would be
    # read as a version 2 event.
    v99 = order_shipped(order_id, None, version=99)
    value = await publisher.publish("order-shipped", v99)

    # Every group that reads order-shipped (inventory, order, order-timeline, analytics...).
    groups = {
        system.topic(group)
        for wiring in reference_services()
        for group, types in wiring.groups.items()
        if OrderShipped in types
    }
    assert {system.topic("inventory"), system.topic("order")} <= groups
    letters = await eventually(
        lambda: dead_letters(
            system.kafka_bootstrap, system.topic("order-shipped-dlq"), order_id, timeout=2
        ),
        lambda found: {header(letter, "dlq.consumer.group") for letter in found} == groups,
        what="a dead letter from every group that reads order-shipped",
    )
    assert len(letters) == len(groups)  # once each: a refusal is not retried
    for letter in letters:
        assert letter.value == value  # byte for byte, so it can be replayed once consumers know v99
        assert header(letter, "dlq.error.type") == "NotAnEvent"
        assert header(letter, "dlq.error.message") == (
            "OrderShipped schema_version 99 is newer than this consumer knows (2): "
            "upgrade the consumer, then replay the dead letter"
        )
        assert header(letter, "dlq.attempts") == "1"


def header(letter: Any, name: str) -> str:
    return next(value.decode() for key, value in letter.headers if key == name)


async def test_every_service_instance_serves_the_asyncapi_document(system: RunningSystem) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for instance in instances(system.state_dir):
            response = await http.get(f"{instance.url}/asyncapi.yaml")
            assert response.status_code == 200, instance.name
            assert response.content == DOCUMENT.read_bytes(), instance.name
            docs = await http.get(f"{instance.url}/openapi.json")
            assert "/asyncapi.yaml" in docs.json()["info"]["description"], instance.name
