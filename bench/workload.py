"""What the benchmark orders: many customers and skus, with balances and stock that never run out.

Every order succeeds, so each saga takes the full five-event path. Customers and skus are
spread wide enough that row locks (a customer's balance, a sku's stock) seldom meet, as in
a real shop; the same index always gives the same order, so runs are comparable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from deploy.demo.client import SagaClient

__all__ = [
    "BALANCE",
    "CUSTOMERS",
    "SKUS",
    "STOCK",
    "UNIT_PRICE",
    "customer",
    "order_body",
    "provision",
    "sku",
]

CUSTOMERS = 500
SKUS = 100
LINES = 2
UNIT_PRICE = "4.50"
# Far more than any run can spend or ship: 10,000 orders take at most 270.00 of a balance.
BALANCE = "1000000000.00"
STOCK = 1_000_000_000
# Admin requests in flight while provisioning: quick, without flooding the services.
PROVISION_CONCURRENCY = 16


def customer(index: int) -> str:
    return f"bench-customer-{index % CUSTOMERS:04d}"


def sku(index: int) -> str:
    return f"bench-sku-{index % SKUS:03d}"


def order_lines(index: int) -> list[tuple[str, int]]:
    """(sku, quantity) of order ``index``: distinct skus, 1 to 3 units each."""
    return [(sku(index * 7 + line * 13), 1 + (index + line) % 3) for line in range(LINES)]


def order_body(index: int) -> dict[str, Any]:
    """The ``POST /orders`` body of order ``index``."""
    return {
        "customer_id": customer(index),
        "items": [
            {"sku": name, "quantity": quantity, "unit_price": UNIT_PRICE}
            for name, quantity in order_lines(index)
        ],
    }


def order_total(index: int) -> Decimal:
    return sum((Decimal(UNIT_PRICE) * q for _, q in order_lines(index)), Decimal(0))


async def provision(client: SagaClient) -> None:
    """Give every customer its balance and every sku its stock, through the admin endpoints."""
    limit = asyncio.Semaphore(PROVISION_CONCURRENCY)

    async def limited(call: Awaitable[None]) -> None:
        async with limit:
            await call

    calls = [client.set_balance(customer(i), BALANCE) for i in range(CUSTOMERS)]
    calls += [client.set_stock(sku(i), STOCK) for i in range(SKUS)]
    await asyncio.gather(*(limited(call) for call in calls))
