"""An order as the other services see it: its payment, its stock reservation, its shipment.

Each service owns its data, so the explorer asks each one over HTTP (their admin ``GET``
endpoints, with this service's admin token) rather than reading their tables. A service that
does not answer, or is not configured, is shown as such: the page never fails for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

__all__ = ["PeerView", "Peers"]

TIMEOUT_S = 2.0

# What each service calls the order's record, and where it serves it.
_PATHS = {
    "payment": "/payments/{order_id}",
    "inventory": "/reservations/{order_id}",
    "shipping": "/shipments/{order_id}",
}
_TITLES = {"payment": "payment", "inventory": "stock reservation", "shipping": "shipment"}


@dataclass(frozen=True)
class PeerView:
    """What one service answered about an order."""

    service: str
    title: str
    state: str
    """``found``, ``none`` (the service has no record of it), ``unavailable`` or
    ``not configured``."""
    record: Mapping[str, Any]
    detail: str = ""


@dataclass(frozen=True)
class Peers:
    """The base URLs of the other services (None: not configured) and the admin token."""

    urls: Mapping[str, str | None]
    admin_token: SecretStr | None

    async def views(self, order_id: str) -> list[PeerView]:
        """Every service's view of ``order_id``, asked at the same time."""
        headers = {}
        if self.admin_token is not None:
            headers["Authorization"] = f"Bearer {self.admin_token.get_secret_value()}"
        async with httpx.AsyncClient(timeout=TIMEOUT_S, headers=headers) as http:
            return list(
                await asyncio.gather(*(self._view(http, name, order_id) for name in _PATHS))
            )

    async def _view(self, http: httpx.AsyncClient, service: str, order_id: str) -> PeerView:
        title = _TITLES[service]
        base = self.urls.get(service)
        if not base:
            detail = f"set SAGAKIT_{service.upper()}_URL to show it"
            return PeerView(service, title, "not configured", {}, detail)
        url = base.rstrip("/") + _PATHS[service].format(order_id=order_id)
        try:
            response = await http.get(url)
        except httpx.HTTPError as error:
            return PeerView(service, title, "unavailable", {}, f"{type(error).__name__}: {error}")
        if response.status_code == 404 and _detail(response).startswith("no "):
            return PeerView(service, title, "none", {}, f"{service} has no record of this order")
        if response.status_code != 200:
            detail = f"{url} answered {response.status_code}: {response.text[:200]}"
            return PeerView(service, title, "unavailable", {}, detail)
        return PeerView(service, title, "found", response.json())


def _detail(response: httpx.Response) -> str:
    """The ``detail`` of a FastAPI error (``no payment for order ...``), or ``""``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("detail", "")) if isinstance(body, dict) else ""
