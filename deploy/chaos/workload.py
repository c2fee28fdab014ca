"""The order mix of a chaos run: every business outcome, placed at a steady rate.

Customers: most can pay for anything, some run out after an order or two (declines), a few
have no account (unknown customers). Skus: most are plentiful, some are scarce (they run out
mid-run), a few were never stocked (unknown skus). Injected faults add the rest, kept alive
by ``BusinessFaults``: a share of payments declined, of reservations failed and of shipments
failed, and now and then a transient error that a retry gets past.

Each order carries an ``Idempotency-Key``, so a request whose answer was lost (the order
service killed, PostgreSQL restarting) is sent again until it is answered, and never makes
a second order. Every name starts with the run's id: runs never share a customer or a sku.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from deploy.chaos.manifest import Manifest
from deploy.demo.client import SagaClient

__all__ = ["Placement", "Workload", "place_orders"]

RICH = Decimal("1000000.00")
POOR = Decimal("25.00")
PLENTY = 1_000_000
SCARCE = 4
PRICES = ("1.00", "2.50", "4.50", "9.99", "12.00")
PROVISION_CONCURRENCY = 16
RETRY_PAUSE_S = 0.5


@dataclass(frozen=True)
class Workload:
    """``orders`` orders over a run's customers and skus, the same for the same seed."""

    run_id: str
    orders: int
    seed: int = 1
    rich_customers: int = 40
    poor_customers: int = 10
    unknown_customers: int = 2
    plentiful_skus: int = 20
    scarce_skus: int = 6
    unknown_skus: int = 2

    def manifest(self) -> Manifest:
        """The customers and skus, with what each starts with (orders come later)."""
        balances: dict[str, Decimal | None] = {}
        for label, count, balance in (
            ("rich", self.rich_customers, RICH),
            ("poor", self.poor_customers, POOR),
            ("unknown", self.unknown_customers, None),
        ):
            balances |= {f"{self.run_id}-{label}-{i}": balance for i in range(count)}
        stock: dict[str, int | None] = {}
        for label, count, units in (
            ("plenty", self.plentiful_skus, PLENTY),
            ("scarce", self.scarce_skus, SCARCE),
            ("unknown", self.unknown_skus, None),
        ):
            stock |= {f"{self.run_id}-sku-{label}-{i}": units for i in range(count)}
        return Manifest(balances=balances, stock=stock)

    def bodies(self) -> list[dict[str, Any]]:
        """The ``POST /orders`` bodies, in order."""
        return list(self.iter_bodies())

    def iter_bodies(self) -> Iterator[dict[str, Any]]:
        """The ``POST /orders`` bodies, in order, made one at a time (a soak places hundreds
        of thousands)."""
        rng = random.Random(self.seed)
        manifest = self.manifest()
        customers = list(manifest.balances)
        rich = [c for c in customers if "-rich-" in c]
        others = [c for c in customers if "-rich-" not in c]
        skus = list(manifest.stock)
        plenty = [s for s in skus if "-plenty-" in s]
        rare = [s for s in skus if "-plenty-" not in s]
        for _ in range(self.orders):
            customer = rng.choice(rich) if rng.random() < 0.9 else rng.choice(others)
            lines = rng.sample(plenty, k=rng.choice((1, 1, 2, 3)))
            if rng.random() < 0.06:
                lines[0] = rng.choice(rare)
            yield {
                "customer_id": customer,
                "items": [
                    {
                        "sku": sku,
                        "quantity": rng.randint(1, 3),
                        "unit_price": rng.choice(PRICES),
                    }
                    for sku in lines
                ],
            }

    async def provision(self, client: SagaClient, manifest: Manifest) -> None:
        """Open the accounts and stock the skus the manifest gives a starting point."""
        gate = asyncio.Semaphore(PROVISION_CONCURRENCY)

        async def limited(call: Awaitable[None]) -> None:
            async with gate:
                await call

        calls = [
            client.set_balance(customer, str(balance))
            for customer, balance in manifest.balances.items()
            if balance is not None
        ]
        calls += [
            client.set_stock(sku, units)
            for sku, units in manifest.stock.items()
            if units is not None
        ]
        await asyncio.gather(*(limited(call) for call in calls))


@dataclass
class Placement:
    """How placing the orders went."""

    accepted: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    """Orders given up on, by the last answer (their deadline passed, or a 4xx)."""
    retries: int = 0
    """Requests sent again after no answer or a 5xx (the same Idempotency-Key)."""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": len(self.accepted),
            "refused": self.refused,
            "retries": self.retries,
            "seconds": round(self.seconds, 1),
        }


async def _place_one(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    key: str,
    deadline: float,
    placement: Placement,
) -> None:
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = await http.post(url, json=body, headers={"Idempotency-Key": key})
        except httpx.HTTPError as error:
            last = type(error).__name__
        else:
            if response.status_code == 202:
                placement.accepted.append(response.json()["order_id"])
                return
            last = f"HTTP {response.status_code}"
            if response.status_code < 500:
                break  # the request itself is wrong: sending it again changes nothing
        placement.retries += 1
        await asyncio.sleep(RETRY_PAUSE_S)
    placement.refused[last] = placement.refused.get(last, 0) + 1


async def place_orders(
    order_url: str,
    bodies: list[dict[str, Any]],
    *,
    key_prefix: str,
    rate: float,
    concurrency: int,
    give_up_s: float,
) -> Placement:
    """Send ``bodies`` at ``rate`` per second (at most ``concurrency`` unanswered), each
    again until it is accepted or ``give_up_s`` seconds have passed since it was due."""
    placement = Placement()
    began = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as http:

        async def one(index: int, body: dict[str, Any]) -> None:
            async with gate:
                await _place_one(
                    http,
                    f"{order_url}/orders",
                    body,
                    f"{key_prefix}-{index}",
                    time.monotonic() + give_up_s,
                    placement,
                )

        tasks = []
        for index, body in enumerate(bodies):
            # Due at a fixed time: a stall (all requests waiting) is made up afterwards.
            await asyncio.sleep(max(0.0, began + index / rate - time.monotonic()))
            await gate.acquire()  # never more than ``concurrency`` due and unsent
            gate.release()
            tasks.append(asyncio.create_task(one(index, body)))
        await asyncio.gather(*tasks)
    placement.seconds = time.monotonic() - began
    return placement
