"""What the benchmark orders: many customers and skus, with balances and stock that never run out.

Every order succeeds, so each saga takes the full five-event path. Customers and skus are
spread wide enough that row locks (a customer's balance, a sku's stock) seldom meet, as in
a real shop; the same index always gives the same order, so runs are comparable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from deploy.demo.client import SagaClient

__all__ = ["BALANCE", "CUSTOMER_PREFIX", "STOCK", "UNIT_PRICE", "Workload"]

CUSTOMER_PREFIX = "bench-customer-"

LINES = 2
UNIT_PRICE = "4.50"
# Far more than any run can spend or ship: 10,000 orders take at most 270.00 of a balance.
BALANCE = "1000000000.00"
STOCK = 1_000_000_000
# Admin requests in flight while provisioning: quick, without flooding the services.
PROVISION_CONCURRENCY = 16


@dataclass(frozen=True)
class Workload:
    """Orders over ``customers`` customers and ``skus`` skus."""

    customers: int = 500
    skus: int = 100

    def customer(self, index: int) -> str:
        return f"{CUSTOMER_PREFIX}{index % self.customers:04d}"

    def sku(self, index: int) -> str:
        return f"bench-sku-{index % self.skus:03d}"

    def lines(self, index: int) -> list[tuple[str, int]]:
        """(sku, quantity) of order ``index``: distinct skus, 1 to 3 units each."""
        return [(self.sku(index * 7 + line * 13), 1 + (index + line) % 3) for line in range(LINES)]

    def total(self, index: int) -> Decimal:
        return sum((Decimal(UNIT_PRICE) * q for _, q in self.lines(index)), Decimal(0))

    def body(self, index: int) -> dict[str, Any]:
        """The ``POST /orders`` body of order ``index``."""
        return {
            "customer_id": self.customer(index),
            "items": [
                {"sku": name, "quantity": quantity, "unit_price": UNIT_PRICE}
                for name, quantity in self.lines(index)
            ],
        }

    async def provision(self, client: SagaClient) -> None:
        """Give every customer its balance and every sku its stock, with the admin endpoints."""
        limit = asyncio.Semaphore(PROVISION_CONCURRENCY)

        async def limited(call: Awaitable[None]) -> None:
            async with limit:
                await call

        calls = [client.set_balance(self.customer(i), BALANCE) for i in range(self.customers)]
        calls += [client.set_stock(self.sku(i), STOCK) for i in range(self.skus)]
        await asyncio.gather(*(limited(call) for call in calls))
