"""``GET /orders`` with its filters (status, customer_id, older_than, stuck), over HTTP.

Stuck sagas themselves are made and listed by tests/e2e/test_explorer_browser.py, which
dead-letters one; the deadlines are covered by tests/integration/test_order_queries.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import Ledger, wait_terminal


async def listing(system: RunningSystem, **params: str) -> Any:
    response = await system.client.http.get(f"{system.client.urls.order}/orders", params=params)
    return response


async def test_the_filters_narrow_the_list_together(system: RunningSystem) -> None:
    ledger = Ledger(system.client)
    ann = await ledger.customer("listing-ann", "100.00")
    bob = await ledger.customer("listing-bob", "1.00")
    sku = await ledger.sku("listing", 10)
    completed = await ledger.place(ann, [(sku, 1, "5.00")])
    declined = await ledger.place(bob, [(sku, 1, "5.00")])
    for order in (completed, declined):
        await wait_terminal(system.client, order["order_id"])

    async def ids(**params: str) -> list[str]:
        response = await listing(system, **params)
        assert response.status_code == 200, response.text
        return [order["order_id"] for order in response.json()]

    assert await ids(customer_id=ann) == [completed["order_id"]]
    assert await ids(customer_id=bob, status="CANCELLED") == [declined["order_id"]]
    assert await ids(customer_id=bob, status="COMPLETED") == []
    assert await ids(customer_id=ann, older_than="PT1H") == []  # placed just now
    assert await ids(customer_id=ann, older_than="0.001") == [completed["order_id"]]
    assert await ids(customer_id=ann, stuck="true") == []  # done, nothing to look at
    await ledger.assert_invariants()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"older_than": "soon"}, "older_than"),
        ({"older_than": "-5"}, "older_than"),
        ({"stuck": "maybe"}, "stuck"),
        ({"status": "LOST"}, "status"),
    ],
)
async def test_a_bad_filter_is_a_422_naming_it(
    system: RunningSystem, params: dict[str, str], field: str
) -> None:
    response = await listing(system, **params)
    assert response.status_code == 422
    assert field in str(response.json()["detail"][0]["loc"])


async def test_the_filters_are_documented_in_the_openapi(system: RunningSystem) -> None:
    response = await system.client.http.get(f"{system.client.urls.order}/openapi.json")
    operation = response.json()["paths"]["/orders"]["get"]
    documented = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert {"status", "customer_id", "older_than", "stuck", "limit"} <= set(documented)
    assert "ISO 8601" in documented["older_than"]["description"]
    assert "dead-letter" in documented["stuck"]["description"]
