"""The order service's admin API, for the commands that act through it (bulk actions).

Every call sends ``Authorization: Bearer $SAGAKIT_ADMIN_TOKEN``; anything but a 2xx answer
is a one-line error that says what to do (the service's own ``detail`` when it gives one).
"""

from __future__ import annotations

from typing import Any

import httpx

from services.order.cli.orders import OrderCliSettings
from shared.ops.cli.config import Config
from shared.ops.cli.output import CliError

__all__ = ["admin_call"]

HTTP_TIMEOUT_S = 30.0


def admin_call(cfg: Config, method: str, path: str, **kwargs: Any) -> Any:
    """One request to the order service's admin API (SAGAKIT_ORDER_URL); its JSON answer."""
    base = cfg.settings_of(OrderCliSettings).order_url.rstrip("/")
    token = cfg.settings.admin_token
    if token is None:
        raise CliError("SAGAKIT_ADMIN_TOKEN is not set: the order service's admin API needs it")
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
    try:
        with httpx.Client(timeout=min(cfg.timeout_s, HTTP_TIMEOUT_S)) as http:
            response = http.request(method, f"{base}{path}", headers=headers, **kwargs)
    except httpx.TransportError as error:
        raise CliError(
            f"cannot reach the order API at {base} ({type(error).__name__}): is it running? "
            "(sagakit stack status)"
        ) from error
    if response.status_code in (401, 403):
        raise CliError(
            f"the order API refused the admin token ({response.status_code}): "
            "give the services' SAGAKIT_ADMIN_TOKEN"
        )
    if response.is_error:
        raise CliError(f"the order API answered {response.status_code}: {_detail(response)}")
    return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
    if isinstance(detail, list):  # FastAPI's 422: where and what
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}"
            for item in detail
        )
    return str(detail)
