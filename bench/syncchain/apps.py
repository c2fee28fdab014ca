"""The four synchronous services as FastAPI apps: order calls the other three and waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel

from bench.connections import KeepAliveClients
from bench.syncchain import work
from bench.syncchain.settings import SyncSettings
from services.events import CATALOGUE, LineItem
from services.order import store as order_store
from services.order.api import OrderCreate, OrderPublic
from services.order.model import OrderLine, order_total
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWorkFactory, make_engine

__all__ = ["APPS", "DOWNSTREAM_CONNECTIONS", "Refused"]

# More than the benchmark's clients ever have in flight at once (32).
DOWNSTREAM_CONNECTIONS = 64


class Refused(Exception):
    """A downstream service said no (declined, out of stock, not shipped)."""


class ChargeIn(BaseModel):
    order_id: str
    customer_id: str
    total: Decimal


class ReservationIn(BaseModel):
    order_id: str
    items: list[LineItem]


class ShipmentIn(BaseModel):
    order_id: str


def _service(
    settings: SyncSettings, title: str, downstream: Sequence[KeepAliveClients] = ()
) -> tuple[FastAPI, UnitOfWorkFactory]:
    """An app with its database (and connections to ``downstream`` services), all closed
    when the app stops, and a health route."""
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for connections in downstream:
                await connections.aclose()
            await engine.dispose()

    app = FastAPI(title=f"sync chain {title}", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app, UnitOfWorkFactory(engine, Topics(CATALOGUE))


def _refuse(what: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, what)


def payment_app(settings: SyncSettings) -> FastAPI:
    app, units = _service(settings, "payment")

    @app.post("/charges")
    async def charge(body: ChargeIn) -> dict[str, str]:
        async with units() as uow:
            if not await work.charge(uow, body.order_id, body.customer_id, body.total):
                raise _refuse("declined")
        return {"status": "CHARGED"}

    return app


def inventory_app(settings: SyncSettings) -> FastAPI:
    app, units = _service(settings, "inventory")

    @app.post("/reservations")
    async def reserve(body: ReservationIn) -> dict[str, str]:
        lines = [(item.sku, item.quantity) for item in body.items]
        async with units() as uow:
            if not await work.reserve_stock(uow, body.order_id, lines):
                raise _refuse("out of stock")
        return {"status": "RESERVED"}

    @app.post("/reservations/{order_id}/shipped")
    async def shipped(order_id: str) -> dict[str, str]:
        async with units() as uow:
            await work.ship_stock(uow, order_id)
        return {"status": "SHIPPED"}

    return app


def shipping_app(settings: SyncSettings) -> FastAPI:
    app, units = _service(settings, "shipping")

    @app.post("/shipments")
    async def ship(body: ShipmentIn) -> dict[str, str]:
        async with units() as uow:
            tracking_id = await work.ship_order(uow, body.order_id)
        if tracking_id is None:
            raise _refuse("not shipped")
        return {"tracking_id": tracking_id}

    return app


def order_app(settings: SyncSettings) -> FastAPI:
    """``POST /orders``: insert, then charge, reserve, ship, mark shipped, complete, answer.

    The body is validated by the real order API's model, and the answer is its model too.
    """
    # Per downstream service, keep-alive connections enough for every concurrent order; they
    # open on first use. Not one httpx pool: its book-keeping would slow this side down.
    connections = {
        url: KeepAliveClients(DOWNSTREAM_CONNECTIONS, settings.call_timeout_s)
        for url in (settings.payment_url, settings.inventory_url, settings.shipping_url)
    }
    app, units = _service(settings, "order", list(connections.values()))

    async def call(base: str, path: str, body: dict[str, Any]) -> None:
        url = f"{base}{path}"
        async with connections[base].client() as http:
            response = await http.post(url, json=body)
        if response.status_code == status.HTTP_409_CONFLICT:
            raise Refused(f"{url}: {response.json()['detail']}")
        response.raise_for_status()

    @app.post("/orders", status_code=status.HTTP_201_CREATED)
    async def place_order(body: OrderCreate) -> OrderPublic:
        lines = [OrderLine(item.sku, item.quantity, item.unit_price) for item in body.items]
        items = [item.model_dump(mode="json") for item in body.items]
        async with units() as uow:
            order = await order_store.add_order(
                uow.session,
                order_id=order_store.new_order_id(),
                customer_id=body.customer_id,
                items=items,
                total=order_total(lines),
                idempotency_key=None,
            )
            await uow.commit()
        assert order is not None  # no idempotency key, so no conflict
        stock = [{"sku": item.sku, "quantity": item.quantity} for item in body.items]
        charge = {"order_id": order.order_id, "customer_id": order.customer_id}
        try:
            await call(settings.payment_url, "/charges", charge | {"total": str(order.total)})
            await call(
                settings.inventory_url,
                "/reservations",
                {"order_id": order.order_id, "items": stock},
            )
            await call(settings.shipping_url, "/shipments", {"order_id": order.order_id})
            await call(settings.inventory_url, f"/reservations/{order.order_id}/shipped", {})
        except Refused as refused:
            raise HTTPException(status.HTTP_409_CONFLICT, str(refused)) from refused
        except httpx.HTTPError as error:
            detail = f"a downstream service failed: {type(error).__name__}"
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail) from error
        async with units() as uow:
            completed = await work.complete_order(uow, order)
        return OrderPublic.of(completed)

    return app


APPS: dict[str, Callable[[SyncSettings], FastAPI]] = {
    "order": order_app,
    "payment": payment_app,
    "inventory": inventory_app,
    "shipping": shipping_app,
}
