"""Bad input gets a 4xx that says what is wrong, never a 5xx; admin endpoints want the token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import instances, unique

Json = dict[str, Any]

ITEM: Json = {"sku": "mug", "quantity": 1, "unit_price": "12.50"}


def order(**changes: Any) -> Json:
    """A valid order body with ``changes`` applied (a value of ``...`` removes the field)."""
    body: Json = {"customer_id": "validation", "items": [ITEM]}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def item(**changes: Any) -> Json:
    line = {**ITEM, **changes}
    return {key: value for key, value in line.items() if value is not ...}


@pytest.fixture
async def anonymous() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client without the admin token, as any caller of the order API."""
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def fields_named(response: httpx.Response) -> set[str]:
    """Every name in the ``loc`` of a 422's details (FastAPI's validation errors)."""
    details = response.json()["detail"]
    assert isinstance(details, list), details
    return {str(part) for detail in details for part in detail["loc"]}


INVALID_ORDERS = {
    "empty body": ({}, "customer_id"),
    "no customer_id": (order(customer_id=...), "customer_id"),
    "no items": (order(items=...), "items"),
    "empty customer_id": (order(customer_id=""), "customer_id"),
    "customer_id a number": (order(customer_id=123), "customer_id"),
    "items not a list": (order(items="mug"), "items"),
    "empty items": (order(items=[]), "items"),
    "too many items": (order(items=[ITEM] * 101), "items"),
    "item without sku": (order(items=[item(sku=...)]), "sku"),
    "empty sku": (order(items=[item(sku="")]), "sku"),
    "zero quantity": (order(items=[item(quantity=0)]), "quantity"),
    "negative quantity": (order(items=[item(quantity=-2)]), "quantity"),
    "quantity as text": (order(items=[item(quantity="two")]), "quantity"),
    "fractional quantity": (order(items=[item(quantity=1.5)]), "quantity"),
    "huge quantity": (order(items=[item(quantity=10**30)]), "quantity"),
    "price with 3 decimals": (order(items=[item(unit_price="12.505")]), "unit_price"),
    "negative price": (order(items=[item(unit_price="-1.00")]), "unit_price"),
    "price as a float": (order(items=[item(unit_price=12.5)]), "unit_price"),
    "price not a number": (order(items=[item(unit_price="twelve")]), "unit_price"),
    "price with an exponent": (order(items=[item(unit_price="1e3")]), "unit_price"),
    "unknown field": (order(coupon="FREE"), "coupon"),
    "unknown item field": (order(items=[item(colour="red")]), "colour"),
}


@pytest.mark.parametrize(("body", "field"), INVALID_ORDERS.values(), ids=INVALID_ORDERS.keys())
async def test_an_invalid_order_is_refused_with_422_naming_the_field(
    system: RunningSystem, anonymous: httpx.AsyncClient, body: Json, field: str
) -> None:
    response = await anonymous.post(f"{system.client.urls.order}/orders", json=body)

    assert response.status_code == 422, response.text
    assert field in fields_named(response), response.text


async def test_an_order_too_expensive_to_store_is_refused_not_crashed(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    # Each value is valid on its own; the total (about 10**20) is not an amount of money.
    body = order(items=[item(quantity=100_000, unit_price="999999999999999.99")])

    response = await anonymous.post(f"{system.client.urls.order}/orders", json=body)

    assert response.status_code == 422, response.text
    assert "items" in fields_named(response), response.text


async def test_a_body_that_is_not_json_is_refused_with_422(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    response = await anonymous.post(
        f"{system.client.urls.order}/orders",
        content=b"customer_id=alice&sku=mug",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text


async def test_a_json_list_instead_of_an_object_is_refused_with_422(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    response = await anonymous.post(f"{system.client.urls.order}/orders", json=[order()])

    assert response.status_code == 422, response.text


async def test_a_two_megabyte_body_is_refused_with_413(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    body = json.dumps(order(customer_id="x" * 2_000_000)).encode()

    response = await anonymous.post(
        f"{system.client.urls.order}/orders",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413, response.text


async def test_a_two_megabyte_body_without_a_length_is_refused_with_413(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # streamed: no Content-Length header
        for _ in range(32):
            yield b" " * 65_536

    response = await anonymous.post(
        f"{system.client.urls.order}/orders",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413, response.text


async def test_an_unknown_order_and_its_timeline_are_404(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    missing = unique("no-such-order")

    found = await anonymous.get(f"{system.client.urls.order}/orders/{missing}")
    timeline = await anonymous.get(f"{system.client.urls.order}/orders/{missing}/timeline")

    assert (found.status_code, timeline.status_code) == (404, 404)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=SHIPPED", "status"),
        ("status=completed", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
    ],
)
async def test_a_bad_filter_of_the_order_list_is_refused_with_422(
    system: RunningSystem, anonymous: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await anonymous.get(f"{system.client.urls.order}/orders?{query}")

    assert response.status_code == 422, response.text
    assert field in fields_named(response), response.text


async def test_the_order_list_filters_by_status(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    response = await anonymous.get(f"{system.client.urls.order}/orders?status=COMPLETED&limit=5")

    assert response.status_code == 200, response.text
    assert {o["status"] for o in response.json()} <= {"COMPLETED"}


def admin_endpoints(system: RunningSystem) -> list[tuple[str, str, Json | None]]:
    """(method, url, body) of every admin endpoint of every instance."""
    by_service: dict[str, list[tuple[str, str, Json | None]]] = {
        "payment": [
            ("PUT", "/accounts/someone", {"balance": "1.00"}),
            ("GET", "/accounts/someone", None),
            ("GET", "/payments/some-order", None),
        ],
        "inventory": [
            ("PUT", "/stock/some-sku", {"available": 1}),
            ("GET", "/stock/some-sku", None),
        ],
        "shipping": [("GET", "/shipments/some-order", None)],
    }
    faults: list[tuple[str, str, Json | None]] = [
        ("POST", "/faults", {"kind": "transient", "count": 1}),
        ("GET", "/faults", None),
        ("DELETE", "/faults", None),
    ]
    return [
        (method, f"{instance.url}{path}", body)
        for instance in instances(system.state_dir)
        for method, path, body in [*by_service.get(instance.service, []), *faults]
    ]


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [(None, 401), ("Bearer not-the-token", 403), ("Basic dXNlcjpwYXNz", 403)],
    ids=["no token", "wrong token", "not a bearer token"],
)
async def test_admin_endpoints_refuse_callers_without_the_token(
    system: RunningSystem, anonymous: httpx.AsyncClient, authorization: str | None, expected: int
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answers = {}
    for method, url, body in admin_endpoints(system):
        response = await anonymous.request(method, url, json=body, headers=headers)
        answers[f"{method} {url}"] = response.status_code

    assert answers == dict.fromkeys(answers, expected)
    # and nothing they asked for was done
    for instance in instances(system.state_dir):
        faults = (await system.client.http.get(f"{instance.url}/faults")).json()
        assert faults == [], (instance.name, faults)
    assert (await system.client.payment("some-order")) is None
    account = await system.client.http.get(f"{system.client.urls.payment}/accounts/someone")
    stock = await system.client.http.get(f"{system.client.urls.inventory}/stock/some-sku")
    assert (account.status_code, stock.status_code) == (404, 404)


INVALID_ADMIN = {
    "negative balance": ("payment", "PUT", "/accounts/someone", {"balance": "-5.00"}),
    "balance with 3 decimals": ("payment", "PUT", "/accounts/someone", {"balance": "1.005"}),
    "balance as a float": ("payment", "PUT", "/accounts/someone", {"balance": 1.5}),
    "negative stock": ("inventory", "PUT", "/stock/some-sku", {"available": -1}),
    "stock as text": ("inventory", "PUT", "/stock/some-sku", {"available": "ten"}),
    "unknown fault kind": ("order", "POST", "/faults", {"kind": "explode"}),
    "fault kind of another service": ("payment", "POST", "/faults", {"kind": "fail"}),
    "fault rate above 1": ("shipping", "POST", "/faults", {"kind": "fail", "rate": 2}),
    "delay without delay_ms": ("inventory", "POST", "/faults", {"kind": "delay"}),
}


@pytest.mark.parametrize(
    ("service", "method", "path", "body"), INVALID_ADMIN.values(), ids=INVALID_ADMIN.keys()
)
async def test_invalid_admin_input_is_refused_with_422(
    system: RunningSystem, service: str, method: str, path: str, body: Json
) -> None:
    url = system.client.urls.service(service) + path

    response = await system.client.http.request(method, url, json=body)

    assert response.status_code == 422, response.text


NUL = "nul\x00byte"
# Each place a string reaches PostgreSQL, with a NUL character in it: (service, method, path,
# body, the field the 422 must name). "%00" is how a NUL travels in a path.
UNSTORABLE = {
    "order customer_id": ("order", "POST", "/orders", order(customer_id=NUL), "customer_id"),
    "order sku": ("order", "POST", "/orders", order(items=[item(sku=NUL)]), "sku"),
    "order id in the path": ("order", "GET", "/orders/nul%00byte", None, "order_id"),
    "timeline's order id": ("order", "GET", "/orders/nul%00byte/timeline", None, "order_id"),
    "account to set": ("payment", "PUT", "/accounts/nul%00byte", {"balance": "1"}, "customer_id"),
    "account to read": ("payment", "GET", "/accounts/nul%00byte", None, "customer_id"),
    "payment's order id": ("payment", "GET", "/payments/nul%00byte", None, "order_id"),
    "sku to stock": ("inventory", "PUT", "/stock/nul%00byte", {"available": 1}, "sku"),
    "sku to read": ("inventory", "GET", "/stock/nul%00byte", None, "sku"),
    "shipment's order id": ("shipping", "GET", "/shipments/nul%00byte", None, "order_id"),
    "fault's order ids": (
        "shipping", "POST", "/faults", {"kind": "fail", "order_ids": [NUL]}, "order_ids"
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("service", "method", "path", "body", "field"), UNSTORABLE.values(), ids=UNSTORABLE.keys()
)
async def test_text_postgresql_cannot_store_is_refused_with_422_naming_the_field(
    system: RunningSystem, service: str, method: str, path: str, body: Json | None, field: str
) -> None:
    url = system.client.urls.service(service) + path

    response = await system.client.http.request(method, url, json=body)

    assert response.status_code == 422, response.text
    assert field in fields_named(response), response.text
    assert "NUL" in response.text, response.text


@pytest.mark.parametrize(
    ("service", "path", "body", "field"),
    [
        ("payment", "/accounts/" + "c" * 129, {"balance": "1.00"}, "customer_id"),
        ("inventory", "/stock/" + "s" * 65, {"available": 1}, "sku"),
        ("inventory", "/stock/some-sku", {"available": 2**31}, "available"),
    ],
    ids=["customer id too long to be a key", "sku too long to be a key", "stock past integer"],
)
async def test_admin_input_the_tables_cannot_hold_is_refused_with_422(
    system: RunningSystem, service: str, path: str, body: Json, field: str
) -> None:
    url = system.client.urls.service(service) + path

    response = await system.client.http.put(url, json=body)

    assert response.status_code == 422, response.text
    assert field in fields_named(response), response.text


async def test_a_body_nested_too_deeply_to_parse_is_a_client_error(
    system: RunningSystem, anonymous: httpx.AsyncClient
) -> None:
    response = await anonymous.post(
        f"{system.client.urls.order}/orders",
        content=b"[" * 100_000,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400, response.text
