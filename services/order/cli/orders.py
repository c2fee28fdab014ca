"""``sagakit orders create | show ID | timeline ID | list``: the order API (SAGAKIT_ORDER_URL).

The order service's ``COMMANDS`` (``services/order/cli/__init__.py``) name ``app`` ``orders``;
``services.cli`` hands them to ``sagakit``.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer

from shared.ops.cli.config import CliSettings, Config, config
from shared.ops.cli.output import CliError, emit_json, say, table

__all__ = ["OrderCliSettings", "app", "problems", "request"]


class OrderCliSettings(CliSettings):
    """The command line's settings plus the address of the order API."""

    order_url: str = "http://127.0.0.1:8000"


app = typer.Typer(
    help="Place orders and follow their sagas over the order API.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
HTTP_TIMEOUT_S = 10.0


def _call(ctx: typer.Context, method: str, path: str, **kwargs: Any) -> Any:
    """One request to the order API; anything but a 2xx answer is a one-line error."""
    response = request(config(ctx), method, path, HTTP_TIMEOUT_S, **kwargs)
    if response.status_code == 404:
        raise CliError(f"not found: {method} {path}")
    if response.status_code == 422:
        raise CliError(f"the order API refused it: {problems(response)}")
    if response.is_error:
        raise CliError(f"the order API answered {response.status_code}: {response.text[:200]}")
    return response.json()


def request(cfg: Config, method: str, path: str, timeout_s: float, **kwargs: Any) -> httpx.Response:
    """One request to the order service (SAGAKIT_ORDER_URL); a one-line error when it cannot
    be reached, its answer otherwise, whatever the status."""
    base = cfg.settings_of(OrderCliSettings).order_url.rstrip("/")
    try:
        with httpx.Client(timeout=min(cfg.timeout_s, timeout_s)) as http:
            return http.request(method, f"{base}{path}", **kwargs)
    except httpx.TransportError as error:
        raise CliError(
            f"cannot reach the order API at {base} ({type(error).__name__}): is it running? "
            "(sagakit stack status)"
        ) from error


def problems(response: httpx.Response) -> str:
    """An error answer's detail as one line; FastAPI's 422 list as
    ``items.0.quantity: Input should be ...``."""
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
    if not isinstance(detail, list):
        return str(detail)
    return "; ".join(
        f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}" for item in detail
    )


def _item(text: str) -> dict[str, Any]:
    sku, _, rest = text.partition(":")
    quantity, _, price = rest.partition(":")
    if not (sku and quantity.isdigit() and price):
        raise typer.BadParameter(f"{text!r}: write SKU:QUANTITY:UNIT_PRICE, e.g. tea:2:4.50")
    return {"sku": sku, "quantity": int(quantity), "unit_price": price}


def _print_order(order: dict[str, Any]) -> None:
    reason = f" ({order['cancel_reason']})" if order.get("cancel_reason") else ""
    say(f"order {order['order_id']}: {order['status']}{reason}, total {order['total']}")
    say(f"  customer {order['customer_id']}, created {order['created_at']}")
    table(
        ["sku", "quantity", "unit price"],
        [[i["sku"], i["quantity"], i["unit_price"]] for i in order["items"]],
    )


@app.command()
def create(
    ctx: typer.Context,
    customer: Annotated[str, typer.Option("--customer", "-c", help="The customer id.")],
    item: Annotated[
        list[str], typer.Option("--item", "-i", help="SKU:QUANTITY:UNIT_PRICE (repeatable).")
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="The same key returns the same order."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Place an order: its saga starts (payment, stock, shipping)."""
    body = {"customer_id": customer, "items": [_item(text) for text in item]}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    order = _call(ctx, "POST", "/orders", json=body, headers=headers)
    if as_json:
        emit_json(order)
    else:
        _print_order(order)


@app.command()
def show(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order id.")],
    as_json: JsonOption = False,
) -> None:
    """An order: status (and why it was cancelled), total, items."""
    order = _call(ctx, "GET", f"/orders/{order_id}")
    if as_json:
        emit_json(order)
    else:
        _print_order(order)


@app.command()
def timeline(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="The order id.")],
    as_json: JsonOption = False,
) -> None:
    """The order's saga: its events in the order they happened."""
    events = _call(ctx, "GET", f"/orders/{order_id}/timeline")
    if as_json:
        emit_json(events)
        return
    table(
        ["#", "event", "producer", "occurred at", "event id"],
        [
            [n, e["event_type"], e["producer"], e["occurred_at"], e["event_id"]]
            for n, e in enumerate(events, 1)
        ],
    )


@app.command("list")
def list_orders(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="Only orders in this status.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N orders.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent orders, newest first."""
    params: dict[str, Any] = {"limit": limit} | ({"status": status.upper()} if status else {})
    orders = _call(ctx, "GET", "/orders", params=params)
    if as_json:
        emit_json(orders)
        return
    table(
        ["order", "customer", "status", "total", "created at"],
        [
            [o["order_id"], o["customer_id"], o["status"], o["total"], o["created_at"]]
            for o in orders
        ],
    )
