import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.events import CATALOGUE, OrderCreated, PaymentProcessed, decode
from shared.contracts.errors import NotAnEvent
from shared.contracts.topics import Topics, encode


def order_created(order_id: str = "o-1") -> OrderCreated:
    return OrderCreated.first(
        order_id=order_id,
        producer="order",
        customer_id="c-1",
        items=[{"sku": "apple", "quantity": 2, "unit_price": "1.25"}],
        total="2.50",
    )


def test_an_encoded_event_decodes_to_an_equal_typed_event() -> None:
    event = order_created()
    decoded = decode(encode(event, Topics(CATALOGUE)).value)
    assert isinstance(decoded, OrderCreated)
    assert decoded == event
    assert decoded.total == Decimal("2.50")


def test_a_record_is_keyed_by_order_id_on_its_types_topic_with_contract_headers() -> None:
    event = order_created("o-42")
    record = encode(event, Topics(CATALOGUE), traceparent="00-abc-def-01")
    assert record.topic == "order-created"
    assert record.key == b"o-42"
    assert dict(record.headers) == {
        "event_type": b"OrderCreated",
        "event_id": str(event.event_id).encode(),
        "traceparent": b"00-abc-def-01",
    }


def test_the_first_event_of_a_saga_is_its_own_correlation_and_has_no_cause() -> None:
    event = order_created("o-7")
    assert event.correlation_id == "o-7"
    assert event.causation_id is None
    assert event.occurred_at.tzinfo is not None


def test_a_reaction_carries_the_saga_and_names_its_cause() -> None:
    cause = order_created()
    reaction = PaymentProcessed.caused_by(
        cause,
        producer="payment",
        customer_id="c-1",
        amount="2.50",
        items=[{"sku": "a", "quantity": 1}],
    )
    assert (reaction.order_id, reaction.correlation_id) == (cause.order_id, cause.correlation_id)
    assert reaction.causation_id == cause.event_id
    assert reaction.event_id != cause.event_id


def test_every_event_type_round_trips_through_json() -> None:
    fields = {
        "customer_id": "c",
        "items": [{"sku": "a", "quantity": 1}],
        "total": "1.00",
        "amount": "1.00",
        "reason": "r",
        "tracking_id": "TRK-1",
        "carrier": "test-post",
    }
    for cls in CATALOGUE:
        own = {name: fields[name] for name in cls.model_fields if name in fields}
        if cls is OrderCreated:
            own["items"] = [{"sku": "a", "quantity": 1, "unit_price": "1.00"}]
        event = cls.first(order_id="o", producer="test", **own)
        assert decode(event.to_json()) == event, cls.type_name()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"\x00\xff not json", "not a JSON object"),
        (b"[1, 2]", "Input should be an object"),
        (b'{"event_type": "OrderTeleported", "order_id": "o"}', "unknown or missing event_type"),
        (b'{"order_id": "o"}', "unknown or missing event_type"),
        (b'{"event_type": "PaymentFailed", "order_id": "o"}', "Field required"),
        (None, "no value"),
    ],
)
def test_bytes_that_are_not_an_event_are_refused_with_a_reason(
    value: bytes | None, why: str
) -> None:
    with pytest.raises(NotAnEvent, match=why):
        decode(value)


def test_a_timestamp_without_time_zone_is_not_an_event() -> None:
    body = order_created().model_dump(mode="json")
    body["occurred_at"] = datetime(2026, 1, 1).isoformat()  # naive
    with pytest.raises(NotAnEvent, match="occurred_at"):
        decode(json.dumps(body).encode())


def test_timestamps_are_normalised_to_utc() -> None:
    event = order_created()
    assert event.occurred_at.utcoffset() == datetime.now(UTC).utcoffset()


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    body = order_created().model_dump(mode="json") | {"loyalty_points": 12}
    assert isinstance(decode(json.dumps(body).encode()), OrderCreated)
