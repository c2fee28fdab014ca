"""Schema versions: older events are upcast to the current model, newer ones are refused."""

import json
from typing import Any

import pytest

import shared.contracts.catalogue
from services.events import (
    CATALOGUE,
    UNKNOWN_CARRIER,
    UPCASTERS,
    OrderCreated,
    OrderShipped,
    decode,
)
from shared.contracts.errors import NotAnEvent
from shared.contracts.upcasting import RawEvent, UpcasterRegistry

Json = dict[str, Any]


def shipped_v2(**fields: Any) -> OrderShipped:
    return OrderShipped.first(
        order_id="o-1", producer="shipping", tracking_id="TRK-1", carrier="post", **fields
    )


def shipped_v1() -> Json:
    """An ``OrderShipped`` as a shipper on version 1 writes it: no carrier."""
    body: Json = shipped_v2().model_dump(mode="json")
    del body["carrier"]
    return body | {"schema_version": 1}


def raw(body: Json) -> bytes:
    return json.dumps(body).encode()


def test_order_shipped_is_at_version_2_and_every_other_type_at_version_1() -> None:
    versions = {cls.type_name(): cls.current_version() for cls in CATALOGUE}
    assert versions.pop("OrderShipped") == 2
    assert set(versions.values()) == {1}


def test_an_event_is_written_at_its_types_current_version() -> None:
    assert json.loads(shipped_v2().to_json())["schema_version"] == 2


def test_a_version_1_order_shipped_is_read_as_version_2_with_an_unknown_carrier() -> None:
    event = decode(raw(shipped_v1()))
    assert isinstance(event, OrderShipped)
    assert (event.schema_version, event.carrier) == (2, UNKNOWN_CARRIER)
    assert (event.tracking_id, event.order_id) == ("TRK-1", "o-1")


def test_a_version_1_order_shipped_that_names_a_carrier_keeps_it() -> None:
    event = decode(raw(shipped_v1() | {"carrier": "early-post"}))
    assert isinstance(event, OrderShipped)
    assert event.carrier == "early-post"


def test_the_upcast_event_keeps_the_envelope_of_the_record() -> None:
    body = shipped_v1()
    event = decode(raw(body))
    assert str(event.event_id) == body["event_id"]
    assert event.occurred_at.isoformat().startswith(body["occurred_at"][:19])


def test_a_current_event_is_validated_from_its_bytes_without_being_parsed_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hot path: only records of another version (or invalid ones) are parsed to a dict.
    def no_parsing(*args: object, **kwargs: object) -> object:
        raise AssertionError("a current event was parsed to a dict")

    monkeypatch.setattr(shared.contracts.catalogue.json, "loads", no_parsing)
    event = shipped_v2()
    assert decode(event.to_json()) == event


def order_created() -> OrderCreated:
    return OrderCreated.first(
        order_id="o",
        producer="order",
        customer_id="c",
        items=[{"sku": "a", "quantity": 1, "unit_price": "1.00"}],
        total="1.00",
    )


@pytest.mark.parametrize("event", [shipped_v2(), order_created()], ids=["v2 type", "v1 type"])
def test_a_version_newer_than_the_consumer_knows_is_refused_and_says_so(event: Any) -> None:
    # Valid in every field this consumer knows, so without the check it would be misread.
    body = event.model_dump(mode="json") | {"schema_version": 99}
    known = type(event).current_version()
    why = f"{event.event_type} schema_version 99 is newer than this consumer knows \\({known}\\)"
    with pytest.raises(NotAnEvent, match=why):
        decode(raw(body))


def test_a_newer_version_that_the_model_would_refuse_is_refused_as_newer() -> None:
    body = shipped_v2().model_dump(mode="json") | {"schema_version": 3}
    del body["tracking_id"]  # say version 3 moved it
    with pytest.raises(NotAnEvent, match="schema_version 3 is newer"):
        decode(raw(body))


def test_a_version_older_than_any_the_consumer_reads_is_refused() -> None:
    with pytest.raises(NotAnEvent, match="schema_version 0 is older than any this consumer reads"):
        decode(raw(shipped_v1() | {"schema_version": 0}))


def test_an_old_version_that_is_still_invalid_once_upcast_says_what_is_missing() -> None:
    body = shipped_v1()
    del body["tracking_id"]
    with pytest.raises(NotAnEvent, match=r"upcast to 2: OrderShipped\.tracking_id: Field required"):
        decode(raw(body))


@pytest.mark.parametrize("version", ["1", True, 1.0, None])
def test_a_schema_version_that_is_not_an_integer_is_not_upcast(version: object) -> None:
    with pytest.raises(NotAnEvent):
        decode(raw(shipped_v1() | {"schema_version": version}))


def test_a_current_version_that_misses_a_field_is_refused_with_the_validation_error() -> None:
    body = shipped_v2().model_dump(mode="json")
    del body["carrier"]
    with pytest.raises(NotAnEvent, match="carrier: Field required"):
        decode(raw(body))


def test_every_declared_version_has_its_upcasters() -> None:
    UPCASTERS.check({cls.type_name(): cls.current_version() for cls in CATALOGUE})


# The registry on its own


def bump(field: str) -> Any:
    def step(event: RawEvent) -> RawEvent:
        event[field] = event.get(field, 0) + 1
        event.setdefault("trail", []).append(event["schema_version"])
        return event

    return step


def test_the_steps_run_in_order_from_the_records_version_to_the_current_one() -> None:
    registry = UpcasterRegistry()
    for version in (1, 2, 3):
        registry.register("T", version)(bump("steps"))
    upcast = registry.upcast({"schema_version": 2}, "T", 2, 4)
    assert upcast == {"schema_version": 4, "steps": 2, "trail": [2, 3]}


def test_a_record_at_the_current_version_goes_through_no_step() -> None:
    registry = UpcasterRegistry()
    registry.register("T", 1)(bump("steps"))
    assert registry.upcast({"schema_version": 2}, "T", 2, 2) == {"schema_version": 2}


def test_a_failing_step_is_not_an_event_naming_the_step() -> None:
    registry = UpcasterRegistry()

    @registry.register("T", 1)
    def broken(event: RawEvent) -> RawEvent:
        raise KeyError("price")

    with pytest.raises(NotAnEvent, match="T v1 -> v2 upcaster failed: KeyError"):
        registry.upcast({"schema_version": 1}, "T", 1, 2)


def test_two_upcasters_for_one_step_are_refused() -> None:
    registry = UpcasterRegistry()
    registry.register("T", 1)(bump("a"))
    with pytest.raises(ValueError, match="already has an upcaster"):
        registry.register("T", 1)(bump("b"))


def test_versions_start_at_1() -> None:
    with pytest.raises(ValueError, match="versions start at 1"):
        UpcasterRegistry().register("T", 0)


def test_the_check_names_missing_steps_and_steps_beyond_the_current_version() -> None:
    registry = UpcasterRegistry()
    registry.register("A", 1)(bump("x"))
    registry.register("B", 1)(bump("x"))
    with pytest.raises(ValueError) as refused:
        registry.check({"A": 3, "B": 1})
    assert "missing A v2 -> v3" in str(refused.value)
    assert "beyond the current version: B v1 -> v2" in str(refused.value)
