"""The order service's admin API, for the commands that act through it (bulk actions).

Every call sends ``Authorization: Bearer $SAGAKIT_ADMIN_TOKEN``; anything but a 2xx answer
is a one-line error that says what to do (the service's own ``detail`` when it gives one).
"""

from __future__ import annotations

from typing import Any

from services.order.cli.orders import problems, request
from shared.ops.cli.config import Config
from shared.ops.cli.output import CliError

__all__ = ["admin_call"]

HTTP_TIMEOUT_S = 30.0


def admin_call(cfg: Config, method: str, path: str, **kwargs: Any) -> Any:
    """One request to the order service's admin API (SAGAKIT_ORDER_URL); its JSON answer."""
    token = cfg.settings.admin_token
    if token is None:
        raise CliError("SAGAKIT_ADMIN_TOKEN is not set: the order service's admin API needs it")
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
    response = request(cfg, method, path, HTTP_TIMEOUT_S, headers=headers, **kwargs)
    if response.status_code in (401, 403):
        raise CliError(
            f"the order API refused the admin token ({response.status_code}): "
            "give the services' SAGAKIT_ADMIN_TOKEN"
        )
    if response.is_error:
        raise CliError(f"the order API answered {response.status_code}: {problems(response)}")
    return response.json()
