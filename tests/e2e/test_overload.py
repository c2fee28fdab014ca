"""Overload end to end: past its in-flight bound the order API refuses at once (503 with
Retry-After) while the accepted requests wait their turn, and a refused request sent again
with its Idempotency-Key places its order once.

The module runs a system of its own whose order service takes two order requests at a time
(SAGAKIT_MAX_IN_FLIGHT_ORDERS=2). The test holds the orders table locked, so the first two
requests wait inside the database, provably (pg_stat_activity shows them waiting on the
lock); the ones after them are refused while those two still wait.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.conftest import RunningSystem, running_system
from tests.e2e.invariants import eventually
from tests.e2e.scrape import scrape
from tests.infra import Infrastructure

WAIT_S = 30.0
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
async def system(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    state_dir = tmp_path_factory.mktemp("overload-services")
    async with running_system(infra, state_dir, {"SAGAKIT_MAX_IN_FLIGHT_ORDERS": "2"}) as running:
        yield running


def _dsn(system: RunningSystem) -> str:
    return system.env["SAGAKIT_ORDER_DATABASE_URL"].replace(
        "postgresql+asyncpg://", "postgresql://"
    )


async def _inserts_waiting_on_a_lock(database: asyncpg.Connection) -> int:
    count = await database.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO orders%'"
    )
    return int(count)


async def test_past_the_bound_orders_are_refused_at_once_and_placed_once_when_sent_again(
    system: RunningSystem,
) -> None:
    url = f"{system.client.urls.order}/orders"
    customer = f"overload-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "customer_id": customer,
        "items": [{"sku": "tea", "quantity": 1, "unit_price": "1.00"}],
    }
    keys = [f"{customer}-{n}" for n in range(7)]
    locker = await asyncpg.connect(_dsn(system))
    watcher = await asyncpg.connect(_dsn(system))
    async with httpx.AsyncClient(timeout=60) as http:

        async def place(key: str) -> httpx.Response:
            return await http.post(url, json=body, headers={"Idempotency-Key": key})

        try:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE orders IN EXCLUSIVE MODE")
            held = [asyncio.create_task(place(key)) for key in keys[:2]]
            await eventually(
                lambda: _inserts_waiting_on_a_lock(watcher),
                lambda waiting: waiting == 2,
                timeout=WAIT_S,
                what="the first two orders waiting on the locked table",
            )

            refused = [await place(key) for key in keys[2:]]
            # Refused before its body is read: a refusal costs no parsing or validation (at
            # 600 orders/s offered, most requests are refused), so even a malformed one is.
            malformed = await http.post(url, content=b"{not json", headers=JSON)

            # Each refusal came while both accepted requests were still waiting inside.
            assert not any(task.done() for task in held)
            assert malformed.status_code == 503, malformed.text
            assert malformed.headers["content-type"] == "application/json"
            assert "in flight" in malformed.json()["detail"]
            assert await _inserts_waiting_on_a_lock(watcher) == 2
            for response in refused:
                assert response.status_code == 503, response.text
                assert int(response.headers["Retry-After"]) >= 1
                assert "in flight" in response.json()["detail"]
        finally:
            await lock.rollback()
            await locker.close()
            await watcher.close()

        accepted = [await task for task in held]
        assert [response.status_code for response in accepted] == [202, 202]
        # Sent again later with the same keys: each placed, once.
        again = [await place(key) for key in keys[2:]]
        assert [response.status_code for response in again] == [202] * 5
        twice = [await place(key) for key in keys]
        first_ids = [r.json()["order_id"] for r in accepted + again]
        assert [r.json()["order_id"] for r in twice] == first_ids

    listed = await system.client.orders(customer_id=customer, limit=50)
    assert sorted(order["order_id"] for order in listed) == sorted(first_ids)
    metrics = await scrape(system.client.http, system.client.urls.order)
    [shed] = metrics.series("sagakit_orders_shed_total", reason="in_flight")
    assert shed.value >= 5
