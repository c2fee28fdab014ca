"""Where things stand, read from the services: the input of verify's checks.

Two ways to read it. ``read_databases`` asks the four services' databases, one query per
table for every order of the run (quick for ten thousand orders), and sees what no API shows:
the reservations and every event each service emitted (its outbox) or the order service
recorded (the timeline). ``read_http`` asks the admin API, one request per order, customer
and sku, for a deployment whose databases are out of reach (and for the end-to-end tests'
own checks); what it cannot see stays ``None`` and the checks that need it are skipped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
import httpx

from deploy.chaos.endpoints import Endpoints
from deploy.chaos.manifest import Manifest
from deploy.demo.client import SagaClient

__all__ = [
    "OrderRow",
    "PaymentRow",
    "ShipmentRow",
    "Snapshot",
    "StockRow",
    "order_row",
    "read_databases",
    "read_http",
    "unready_instances",
]

T = TypeVar("T")
HTTP_CONCURRENCY = 20
GET_ATTEMPTS = 5
GET_RETRY_PAUSE_S = 0.5

_ORDERS = (
    "SELECT order_id, customer_id, status, cancel_reason, total, items FROM orders "
    "WHERE customer_id = ANY($1::text[])"
)
_PAYMENTS = "SELECT order_id, status, amount FROM payments WHERE order_id = ANY($1::text[])"
_ACCOUNTS = "SELECT customer_id, balance FROM accounts WHERE customer_id = ANY($1::text[])"
_STOCK = "SELECT sku, available, reserved, shipped FROM stock WHERE sku = ANY($1::text[])"
_RESERVATIONS = "SELECT order_id, status FROM reservations WHERE order_id = ANY($1::text[])"
_SHIPMENTS = "SELECT order_id, status, tracking_id FROM shipments WHERE order_id = ANY($1::text[])"
# Every event a service emitted goes through its outbox (sent rows stay for the retention
# period, a day by default); the record's key is the order id, its header the event type.
_EMITTED = (
    "SELECT convert_from(key, 'UTF8') AS order_id, "
    "(SELECT convert_from(decode(h->>1, 'base64'), 'UTF8') FROM jsonb_array_elements(headers) h "
    " WHERE h->>0 = 'event_type' LIMIT 1) AS event_type, count(*) AS n "
    "FROM sagakit_outbox WHERE key = ANY($1::bytea[]) GROUP BY 1, 2"
)
_TIMELINE = (
    "SELECT order_id, event_type, count(*) AS n FROM timeline "
    "WHERE order_id = ANY($1::text[]) GROUP BY 1, 2"
)


@dataclass(frozen=True, slots=True)
class OrderRow:
    order_id: str
    customer_id: str
    status: str
    cancel_reason: str | None
    total: Decimal
    lines: tuple[tuple[str, int], ...]
    """(sku, quantity) of each line."""


@dataclass(frozen=True, slots=True)
class PaymentRow:
    status: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class StockRow:
    available: int
    reserved: int
    shipped: int


@dataclass(frozen=True, slots=True)
class ShipmentRow:
    status: str
    tracking_id: str | None


Counts = dict[tuple[str, str], int]
"""(order id, event type) -> how many such events there are."""


@dataclass(frozen=True)
class Snapshot:
    orders: dict[str, OrderRow]
    payments: dict[str, PaymentRow]
    accounts: dict[str, Decimal]
    """Balances of the customers that have an account."""
    stock: dict[str, StockRow]
    """Of the skus inventory knows."""
    shipments: dict[str, ShipmentRow]
    reservations: dict[str, str] | None
    """Order id -> reservation status; None when not read (over HTTP)."""
    emitted: Counts | None
    """The events the four services emitted (their outboxes); None when not read."""
    timeline: Counts | None
    """The events the order service's timeline holds; None when not read."""
    instances: int = 0
    """Instances asked whether they are ready."""
    unready: tuple[str, ...] = ()
    """Instances that did not answer ``/readyz`` with 200."""


def _lines(items: Any) -> tuple[tuple[str, int], ...]:
    decoded = json.loads(items) if isinstance(items, str) else items
    return tuple((str(item["sku"]), int(item["quantity"])) for item in decoded)


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await connection.fetch(query, *args)
        return rows
    finally:
        await connection.close()


async def read_orders(endpoints: Endpoints, customers: Iterable[str]) -> dict[str, OrderRow]:
    """Every order of ``customers`` the order service holds."""
    rows = await _fetch(endpoints.database_dsn("order"), _ORDERS, list(customers))
    return {
        r["order_id"]: OrderRow(
            r["order_id"],
            r["customer_id"],
            r["status"],
            r["cancel_reason"],
            Decimal(r["total"]),
            _lines(r["items"]),
        )
        for r in rows
    }


async def read_databases(endpoints: Endpoints, manifest: Manifest) -> Snapshot:
    """The snapshot of everything the manifest names, from the four databases."""
    orders = await read_orders(endpoints, manifest.balances)
    ids = list(orders)
    keys = [order_id.encode() for order_id in ids]
    dsn = endpoints.database_dsn
    payments, accounts, stock, reservations, shipments, timeline = await asyncio.gather(
        _fetch(dsn("payment"), _PAYMENTS, ids),
        _fetch(dsn("payment"), _ACCOUNTS, list(manifest.balances)),
        _fetch(dsn("inventory"), _STOCK, list(manifest.stock)),
        _fetch(dsn("inventory"), _RESERVATIONS, ids),
        _fetch(dsn("shipping"), _SHIPMENTS, ids),
        _fetch(dsn("order"), _TIMELINE, ids),
    )
    emitted: Counts = {}
    # The order saga's books: what the checks below count (a service they do not know is left
    # out of them, not a failure).
    for service in ("order", "payment", "inventory", "shipping"):
        for row in await _fetch(dsn(service), _EMITTED, keys):
            emitted[(row["order_id"], row["event_type"])] = int(row["n"])
    return Snapshot(
        orders=orders,
        payments={r["order_id"]: PaymentRow(r["status"], Decimal(r["amount"])) for r in payments},
        accounts={r["customer_id"]: Decimal(r["balance"]) for r in accounts},
        stock={r["sku"]: StockRow(r["available"], r["reserved"], r["shipped"]) for r in stock},
        shipments={r["order_id"]: ShipmentRow(r["status"], r["tracking_id"]) for r in shipments},
        reservations={r["order_id"]: r["status"] for r in reservations},
        emitted=emitted,
        timeline={(r["order_id"], r["event_type"]): int(r["n"]) for r in timeline},
        instances=len(endpoints.instance_urls),
        unready=await unready_instances(endpoints.instance_urls),
    )


async def _bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    gate = asyncio.Semaphore(HTTP_CONCURRENCY)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


async def _get(client: SagaClient, url: str) -> dict[str, Any] | None:
    """The JSON at ``url``, None on 404; asked again when the connection fails (a service
    restarting, a kept-alive connection the server closed meanwhile) or the answer is 503."""
    for attempt in range(1, GET_ATTEMPTS + 1):
        try:
            response = await client.http.get(url)
        except httpx.TransportError:
            if attempt == GET_ATTEMPTS:
                raise
            await asyncio.sleep(GET_RETRY_PAUSE_S * attempt)
            continue
        # 503: its database could not take the read just now (a restart, no connection free).
        if response.status_code != 503 or attempt == GET_ATTEMPTS:
            break
        await asyncio.sleep(GET_RETRY_PAUSE_S * attempt)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


async def read_http(
    client: SagaClient, manifest: Manifest, orders: dict[str, OrderRow] | None = None
) -> Snapshot:
    """The snapshot over the services' APIs: the manifest's orders (or ``orders``, when the
    caller has read them already), its customers' accounts and its skus' stock."""
    urls = client.urls
    if orders is None:
        found = await _bounded(_get(client, f"{urls.order}/orders/{i}") for i in manifest.orders)
        orders = {o["order_id"]: order_row(o) for o in found if o is not None}
    ids = list(orders)
    payments = await _bounded(_get(client, f"{urls.payment}/payments/{i}") for i in ids)
    shipments = await _bounded(_get(client, f"{urls.shipping}/shipments/{i}") for i in ids)
    accounts = await _bounded(
        _get(client, f"{urls.payment}/accounts/{c}") for c in manifest.balances
    )
    stock = await _bounded(_get(client, f"{urls.inventory}/stock/{s}") for s in manifest.stock)
    return Snapshot(
        orders=orders,
        payments={
            i: PaymentRow(p["status"], Decimal(p["amount"]))
            for i, p in zip(ids, payments, strict=True)
            if p is not None
        },
        accounts={
            c: Decimal(a["balance"])
            for c, a in zip(manifest.balances, accounts, strict=True)
            if a is not None
        },
        stock={
            sku: StockRow(s["available"], s["reserved"], s["shipped"])
            for sku, s in zip(manifest.stock, stock, strict=True)
            if s is not None
        },
        shipments={
            i: ShipmentRow(s["status"], s.get("tracking_id"))
            for i, s in zip(ids, shipments, strict=True)
            if s is not None
        },
        reservations=None,
        emitted=None,
        timeline=None,
        instances=len(urls.instances),
        unready=await unready_instances(urls.instances),
    )


def order_row(order: dict[str, Any]) -> OrderRow:
    """An order as ``GET /orders/{id}`` answers it."""
    return OrderRow(
        order["order_id"],
        order["customer_id"],
        order["status"],
        order.get("cancel_reason"),
        Decimal(order["total"]),
        _lines(order["items"]),
    )


async def unready_instances(urls: Iterable[str]) -> tuple[str, ...]:
    """The instances among ``urls`` that do not answer ``/readyz`` with 200."""

    async def ready(http: httpx.AsyncClient, url: str) -> bool:
        try:
            return (await http.get(f"{url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    urls = list(urls)
    async with httpx.AsyncClient(timeout=5) as http:
        answers = await asyncio.gather(*(ready(http, url) for url in urls))
    return tuple(url for url, ok in zip(urls, answers, strict=True) if not ok)
