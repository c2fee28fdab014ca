"""A small HTTP client for the reference system: what the demo, the end-to-end tests and the
benchmark use to drive it exactly as a user would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from deploy.localstack.declared import declared_services

__all__ = ["TERMINAL", "SagaClient", "SystemUrls", "retry_after"]

TERMINAL = frozenset({"COMPLETED", "CANCELLED"})
OVERLOAD_PATIENCE_S = 120.0
"""How long ``place_order`` keeps sending again an order the API refused as overloaded."""


def retry_after(response: httpx.Response) -> float:
    """The seconds of a ``Retry-After`` header (0 when absent or not a number of seconds)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class SystemUrls:
    """Where the services answer, read from ``stack.env``-style settings.

    The order saga's four have a field each (what the client calls them for); ``services``
    holds every service under ``services/`` whose ``SAGAKIT_<NAME>_URL`` is set."""

    order: str
    payment: str
    inventory: str
    shipping: str
    instances: tuple[str, ...]
    admin_token: str
    services: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SystemUrls:
        instances = tuple(url for url in env.get("SAGAKIT_INSTANCE_URLS", "").split(",") if url)
        return cls(
            order=env["SAGAKIT_ORDER_URL"],
            payment=env["SAGAKIT_PAYMENT_URL"],
            inventory=env["SAGAKIT_INVENTORY_URL"],
            shipping=env["SAGAKIT_SHIPPING_URL"],
            instances=instances,
            admin_token=env["SAGAKIT_ADMIN_TOKEN"],
            services={s.name: env[s.url_var] for s in declared_services() if s.url_var in env},
        )

    def service(self, name: str) -> str:
        """Where the service ``name`` answers (KeyError when its URL is not set)."""
        known = {
            "order": self.order,
            "payment": self.payment,
            "inventory": self.inventory,
            "shipping": self.shipping,
        }
        return {**self.services, **known}[name]


class SagaClient:
    """Calls the order API and the admin endpoints; raises on any unexpected status."""

    def __init__(self, urls: SystemUrls, timeout: float = 10.0) -> None:
        self.urls = urls
        self.http = httpx.AsyncClient(
            timeout=timeout, headers={"Authorization": f"Bearer {urls.admin_token}"}
        )

    async def __aenter__(self) -> SagaClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, url, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    # The order API

    async def place_order(
        self,
        customer_id: str,
        items: list[tuple[str, int, str]],
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "customer_id": customer_id,
            "items": [{"sku": s, "quantity": q, "unit_price": p} for s, q, p in items],
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        url = f"{self.urls.order}/orders"
        give_up = time.monotonic() + OVERLOAD_PATIENCE_S
        while True:
            try:
                response = await self.http.post(url, json=body, headers=headers)
            except httpx.TransportError:
                # The answer was lost (a connection reset or closed under us): with an
                # Idempotency-Key the same request is safe again and places one order.
                if not idempotency_key or time.monotonic() > give_up:
                    raise
                await asyncio.sleep(0.2)
                continue
            # 503 with Retry-After: overloaded, nothing done; the same request is safe again.
            overloaded = response.status_code == 503 and "Retry-After" in response.headers
            if not overloaded or time.monotonic() > give_up:
                break
            await asyncio.sleep(retry_after(response))
        response.raise_for_status()
        order: dict[str, Any] = response.json()
        return order

    async def order(self, order_id: str) -> dict[str, Any]:
        order: dict[str, Any] = await self._json("GET", f"{self.urls.order}/orders/{order_id}")
        return order

    async def timeline(self, order_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = await self._json(
            "GET", f"{self.urls.order}/orders/{order_id}/timeline"
        )
        return events

    async def orders(self, **filters: str | int | bool) -> list[dict[str, Any]]:
        """``GET /orders`` with ``filters`` (status, customer_id, older_than, stuck, limit)."""
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in filters.items()}
        found: list[dict[str, Any]] = await self._json(
            "GET", f"{self.urls.order}/orders", params=params
        )
        return found

    async def wait_terminal(self, order_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The order once it is COMPLETED or CANCELLED; TimeoutError if it is not in time."""
        deadline = time.monotonic() + timeout
        while True:
            order = await self.order(order_id)
            if order["status"] in TERMINAL:
                return order
            if time.monotonic() > deadline:
                raise TimeoutError(f"order {order_id} still {order['status']} after {timeout} s")
            await asyncio.sleep(0.1)

    # Admin endpoints

    async def set_balance(self, customer_id: str, balance: str) -> None:
        await self._json(
            "PUT", f"{self.urls.payment}/accounts/{customer_id}", json={"balance": balance}
        )

    async def balance(self, customer_id: str) -> Decimal:
        account = await self._json("GET", f"{self.urls.payment}/accounts/{customer_id}")
        return Decimal(account["balance"])

    async def payment(self, order_id: str) -> dict[str, Any] | None:
        response = await self.http.get(f"{self.urls.payment}/payments/{order_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        payment: dict[str, Any] = response.json()
        return payment

    async def set_stock(self, sku: str, available: int) -> None:
        await self._json("PUT", f"{self.urls.inventory}/stock/{sku}", json={"available": available})

    async def stock(self, sku: str) -> dict[str, Any]:
        stock: dict[str, Any] = await self._json("GET", f"{self.urls.inventory}/stock/{sku}")
        return stock

    async def shipment(self, order_id: str) -> dict[str, Any] | None:
        response = await self.http.get(f"{self.urls.shipping}/shipments/{order_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        shipment: dict[str, Any] = response.json()
        return shipment

    async def add_fault(self, base_url: str, kind: str, **spec: Any) -> dict[str, Any]:
        fault: dict[str, Any] = await self._json(
            "POST", f"{base_url}/faults", json={"kind": kind, **spec}
        )
        return fault

    async def clear_faults(self) -> None:
        """Remove every fault from every instance."""
        for url in self.urls.instances:
            await self._json("DELETE", f"{url}/faults")

    async def health(self, base_url: str) -> dict[str, Any]:
        health: dict[str, Any] = await self._json("GET", f"{base_url}/healthz")
        return health
