"""Many sagas at once, every flow mixed in, and the contract's invariants over all of them."""

from __future__ import annotations

import random
import time
from collections import Counter

from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import Items, Ledger, bounded_gather

SEED = 20240501
ORDERS = 300
CONCURRENCY = 20
SETTLE_TIMEOUT_S = 180.0
PRICES = ("1.00", "2.50", "9.99", "12.00", "40.00")


async def test_three_hundred_mixed_orders_all_end_and_keep_the_books_straight(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    rng = random.Random(SEED)
    # Customers: most can pay, some cannot pay much, some have nothing, a few are unknown.
    balances = ["2000.00"] * 28 + ["30.00"] * 6 + ["0.00"] * 3 + [None] * 3
    customers = [await ledger.customer("load", balance) for balance in balances]
    # Skus: most plentiful, some scarce (they run out mid-run), one empty, one unknown.
    units = [400] * 10 + [6] * 4 + [0, None]
    skus = [await ledger.sku("load", amount) for amount in units]
    await client.add_fault(client.urls.shipping, "fail", rate=0.2)

    def an_order() -> tuple[str, Items]:
        lines = rng.sample(skus, k=rng.choice((1, 1, 2, 3)))
        return rng.choice(customers), [(s, rng.randint(1, 3), rng.choice(PRICES)) for s in lines]

    orders = [an_order() for _ in range(ORDERS)]
    started = time.monotonic()
    await bounded_gather((ledger.place(c, items) for c, items in orders), CONCURRENCY)

    final = await ledger.assert_invariants(timeout=SETTLE_TIMEOUT_S, concurrency=CONCURRENCY)

    elapsed = time.monotonic() - started
    outcomes = Counter(o["cancel_reason"] or o["status"] for o in final.values())
    print(f"{ORDERS} orders settled and checked in {elapsed:.1f} s: {dict(outcomes)}")
    # The mix really was a mix: every flow of the contract happened.
    assert set(outcomes) == {"COMPLETED", "payment_declined", "out_of_stock", "shipping_failed"}
