"""docs/asyncapi.yaml: what the code generates, valid AsyncAPI 3, and true to the wire."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from fastapi import FastAPI

from services.asyncapi import TEXT, reference_services
from services.events import CATALOGUE, OrderCreated, OrderShipped
from shared.app.asyncapi import DOCUMENT, ServiceWiring, build_document, render
from shared.app.asyncapi import main as write_document
from shared.app.service import contracts_router
from shared.contracts.events import Event
from shared.contracts.topics import Topics
from shared.publishing.dlq import dead_letter_headers

# The AsyncAPI 3.0.0 JSON Schema as the AsyncAPI Initiative publishes it (npm @asyncapi/specs
# 6.11.1, schemas/3.0.0.json, Apache-2.0: LICENSE and NOTICE beside it).
SPEC = Path(__file__).with_name("asyncapi_spec") / "asyncapi-3.0.0.json"
EVENTS_MD = DOCUMENT.with_name("events.md")

Json = dict[str, Any]


@cache
def wiring() -> tuple[ServiceWiring, ...]:
    return tuple(reference_services())


@cache
def document() -> Json:
    loaded: Json = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def spec_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SPEC.read_text()))


def test_the_checked_in_document_is_what_the_code_generates() -> None:
    # The CI check: change an event, a topic or a subscription and this fails until
    # `python -m services.asyncapi` is run again.
    assert DOCUMENT.read_text() == render(build_document(CATALOGUE, wiring(), TEXT)), (
        "docs/asyncapi.yaml is out of date: run python -m services.asyncapi"
    )


def test_check_mode_fails_on_a_stale_file_and_passes_on_a_fresh_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text(DOCUMENT.read_text().replace("tracking_id", "tracking_number"))
    assert (
        write_document(CATALOGUE, reference_services(), TEXT, ["--check", "--output", str(stale)])
        == 1
    )
    assert "out of date: run python -m services.asyncapi" in capsys.readouterr().err
    assert write_document(CATALOGUE, reference_services(), TEXT, ["--output", str(stale)]) == 0
    assert (
        write_document(CATALOGUE, reference_services(), TEXT, ["--check", "--output", str(stale)])
        == 0
    )


def test_the_document_is_valid_asyncapi_3() -> None:
    errors = [f"{e.json_path}: {e.message[:200]}" for e in spec_validator().iter_errors(document())]
    assert errors == []


def test_the_spec_schema_refuses_a_broken_document() -> None:
    # So the test above can fail: a wrong action and a wrong Kafka binding are both caught.
    broken = json.loads(json.dumps(document()))
    first_operation = next(iter(broken["operations"].values()))
    first_operation["action"] = "publish"
    assert not spec_validator().is_valid(broken)
    broken = json.loads(json.dumps(document()))
    broken["components"]["messages"]["OrderCreated"]["bindings"]["kafka"]["key"] = {"type": 5}
    assert not spec_validator().is_valid(broken)


def references(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def resolve(pointer: str) -> object:
    node: Any = document()
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_reference_in_the_document_points_at_something_in_it() -> None:
    refs = set(references(document()))
    assert refs, "no references at all"
    unresolved = []
    for ref in sorted(refs):
        try:
            resolve(ref)
        except (KeyError, TypeError):
            unresolved.append(ref)
    assert unresolved == []


def test_every_topic_and_its_dead_letter_topic_is_a_channel_addressed_by_its_name() -> None:
    addresses = {channel["address"] for channel in document()["channels"].values()}
    assert addresses == {f"{{prefix}}{topic}" for topic in Topics(CATALOGUE).all()}


def payload_validator(event_type: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{event_type}", "components": document()["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def example(cls: type[Event]) -> Event:
    fields: Json = {
        "customer_id": "c-1",
        "items": [{"sku": "apple", "quantity": 2}],
        "total": "2.50",
        "amount": "2.50",
        "reason": "out_of_stock",
        "tracking_id": "TRK-1",
        "carrier": "post",
        "sku": None,
    }
    own = {name: fields[name] for name in cls.model_fields if name in fields}
    if cls is OrderCreated:
        own["items"] = [{"sku": "apple", "quantity": 2, "unit_price": "1.25"}]
    return cls.first(order_id="o-1", producer="test", **own)


@pytest.mark.parametrize("cls", CATALOGUE, ids=lambda cls: cls.type_name())
def test_what_a_producer_writes_matches_its_messages_payload_schema(cls: type[Event]) -> None:
    written = json.loads(example(cls).to_json())
    errors = [e.message for e in payload_validator(cls.type_name()).iter_errors(written)]
    assert errors == []


def test_the_payload_schema_refuses_what_the_model_refuses() -> None:
    v1 = json.loads(example(OrderShipped).to_json())
    del v1["carrier"]
    assert not payload_validator("OrderShipped").is_valid(v1)
    bad_money = json.loads(example(OrderCreated).to_json()) | {"total": "2.505"}
    assert not payload_validator("OrderCreated").is_valid(bad_money)


def test_each_message_says_its_types_current_schema_version() -> None:
    messages = document()["components"]["messages"]
    assert messages["OrderShipped"]["title"] == "OrderShipped (schema_version 2)"
    assert messages["OrderCreated"]["title"] == "OrderCreated (schema_version 1)"
    version = document()["components"]["schemas"]["OrderShipped"]["properties"]["schema_version"]
    assert "read from 1 to 2 (older versions are upcast)" in version["description"]


def test_every_message_is_keyed_by_the_order_id() -> None:
    for name, message in document()["components"]["messages"].items():
        assert message["bindings"]["kafka"]["key"]["type"] == "string", name


def test_the_dead_letter_headers_are_the_ones_the_dead_letter_queue_writes() -> None:
    @dataclass
    class Record:
        topic: str = "t"
        partition: int = 0
        offset: int = 0
        key: bytes | None = None
        value: bytes | None = None
        headers: tuple[tuple[str, bytes], ...] = ()

    written = dead_letter_headers(
        Record(), group="g", error=ValueError("x"), attempts=1, failed_at=datetime.now(UTC)
    )
    schema = document()["components"]["schemas"]["DeadLetterHeaders"]
    assert schema["required"] == [name for name, _ in written]


def topic_table() -> dict[str, tuple[set[str], set[str]]]:
    """docs/events.md's topic table: topic -> (produced by, consumed by)."""
    rows = re.findall(
        r"^\| `([a-z-]+)` \| `\w+` \| ([^|]+) \| ([^|]+) \|$", EVENTS_MD.read_text(), re.M
    )
    assert len(rows) == len(CATALOGUE), "docs/events.md's topic table was not found"
    services = {wired.name for wired in wiring()}

    def names(cell: str) -> set[str]:
        return {word for word in re.split(r"[ ,]+", cell.strip()) if word in services}

    return {topic: (names(sent), names(read)) for topic, sent, read in rows}


def test_the_senders_read_from_the_code_are_the_ones_docs_events_md_names() -> None:
    table = topic_table()
    for cls in CATALOGUE:
        senders = {wired.name for wired in wiring() if cls in wired.sends}
        assert senders == table[Topics(CATALOGUE).for_event(cls)][0], cls.type_name()


def test_the_receivers_read_from_the_code_are_the_ones_docs_events_md_names() -> None:
    # The table names each service's own group (named after the service) where it reads the
    # topic for more than a read model; the order service's group reads every topic for the
    # timeline besides, as docs/events.md says under the table.
    table = topic_table()
    for cls in CATALOGUE:
        readers = {w.name for w in wiring() if cls in w.groups.get(w.name, ())}
        assert readers - {"order"} == table[Topics(CATALOGUE).for_event(cls)][1] - {"order"}
        order = next(w for w in wiring() if w.name == "order")
        assert list(order.groups) == ["order"] and cls in order.groups["order"]


def test_every_operation_of_a_service_is_tagged_with_it_and_names_its_group() -> None:
    for name, operation in document()["operations"].items():
        service = operation["tags"][0]["name"]
        assert name.split(".")[0].startswith(service), name
        if operation["action"] == "receive":
            assert operation["bindings"]["kafka"]["groupId"]["enum"] == [name.split(".")[0]]


async def test_the_document_is_served_at_asyncapi_yaml() -> None:
    app = FastAPI()
    app.include_router(contracts_router())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get("/asyncapi.yaml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/yaml")
    assert response.content == DOCUMENT.read_bytes()


async def test_a_missing_document_is_a_404_that_says_how_to_make_it(tmp_path: Path) -> None:
    app = FastAPI()
    app.include_router(contracts_router(tmp_path / "asyncapi.yaml"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        response = await http.get("/asyncapi.yaml")
    assert response.status_code == 404
    assert "python -m services.asyncapi" in response.json()["detail"]
