"""Injected faults (docs/contract.md, section 6): retried, dead-lettered, replayed, crashed.

Most faults are injected before the order is placed, since its id is not known until then: a
fault for any order fires on the next event the instance handles. Tests run one after the
other and each waits for its own sagas to settle, so that event is this test's; where it
matters, the test checks that it was (the dead letter's key, the crash's log line).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from services.events import PaymentProcessed, decode
from shared.ops.replay import replay_dead_letters
from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import (
    Ledger,
    ServiceInstance,
    dead_letters,
    eventually,
    instances,
    stays,
    wait_terminal,
)
from tests.e2e.scrape import scrape

Json = dict[str, Any]

EVENTS = "sagakit_consumer_events_total"

RESTART_TIMEOUT_S = 45.0
"""A restarted instance imports, migrates and rejoins its consumer groups (up to ~15 s)."""


def instance(system: RunningSystem, name: str) -> ServiceInstance:
    return next(i for i in instances(system.state_dir) if i.name == name)


async def counter(system: RunningSystem, url: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` with ``labels`` on one instance's ``/metrics``."""
    return (await scrape(system.client.http, url)).total(name, **labels)


async def duplicates(system: RunningSystem, url: str) -> float:
    """Records one instance skipped as processed before."""
    return await counter(system, url, EVENTS, outcome="duplicate")


async def active_faults(system: RunningSystem, url: str) -> list[Json]:
    response = await system.client.http.get(f"{url}/faults")
    response.raise_for_status()
    faults: list[Json] = response.json()
    return faults


async def wait_ready(each: ServiceInstance) -> None:
    async def status() -> int:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{each.url}/readyz")).status_code

    await eventually(
        status, lambda code: code == 200, timeout=RESTART_TIMEOUT_S, what=f"{each.name} ready"
    )


@pytest.mark.parametrize("name", ["order", "payment", "payment-2", "inventory", "shipping"])
async def test_a_transient_fault_below_the_retry_limit_is_retried_and_the_saga_completes(
    system: RunningSystem, name: str
) -> None:
    client, ledger = system.client, Ledger(system.client)
    url = instance(system, name).url
    customer = await ledger.customer("transient", "1000.00")
    sku = await ledger.sku("transient", 100)
    retries_before = await counter(system, url, "sagakit_consumer_retries_total")
    dead_before = await counter(system, url, EVENTS, outcome="dead_lettered")
    await client.add_fault(url, "transient", count=2)  # the retry limit is 3 attempts

    # A payment instance sees only the orders of the partitions it owns: place orders until
    # one of them has met the fault (its two firings used up).
    for _ in range(12):
        order = await ledger.place(customer, [(sku, 1, "5.00")])
        done = await wait_terminal(client, order["order_id"])
        assert done["status"] == "COMPLETED"
        if not await active_faults(system, url):
            break

    assert await active_faults(system, url) == []
    assert await counter(system, url, "sagakit_consumer_retries_total") >= retries_before + 2
    assert await counter(system, url, EVENTS, outcome="dead_lettered") == dead_before
    await ledger.assert_invariants()


async def test_a_permanent_fault_dead_letters_the_event_and_a_replay_completes_the_order(
    system: RunningSystem,
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("permanent", "100.00")
    sku = await ledger.sku("permanent", 10)
    await client.add_fault(client.urls.inventory, "permanent", count=1)

    order = await ledger.place(customer, [(sku, 2, "7.50")])
    order_id = order["order_id"]

    dlq = system.topic("payment-processed-dlq")
    letters = await dead_letters(system.kafka_bootstrap, dlq, order_id)
    assert len(letters) == 1, f"no dead letter of order {order_id} in {dlq}"
    letter = letters[0]
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["dlq.original.topic"] == system.topic("payment-processed")
    assert headers["dlq.consumer.group"] == system.topic("inventory")  # the prefixed group
    assert headers["dlq.attempts"] == "1"
    assert headers["dlq.error.type"] == "PermanentError"
    assert "injected permanent fault" in headers["dlq.error.message"]
    assert headers["dlq.original.partition"].isdigit()
    assert headers["dlq.original.offset"].isdigit()
    assert datetime.fromisoformat(headers["dlq.failed_at"]).tzinfo is not None
    event = decode(letter.value)  # the value is the event, byte for byte
    assert isinstance(event, PaymentProcessed)
    assert (event.order_id, headers["event_id"]) == (order_id, str(event.event_id))

    # Nothing else will happen to this order: it waits, PAID, for the operator.
    await eventually(
        lambda: client.order(order_id),
        lambda o: o["status"] == "PAID",
        what="order PAID",
    )
    await stays(
        lambda: client.order(order_id),
        lambda o: o["status"] == "PAID",
        seconds=3,
        what="order stays PAID",
    )
    assert (await client.stock(sku))["available"] == 10

    replayed = await replay_dead_letters(
        {"bootstrap_servers": system.kafka_bootstrap},
        dlq,
        match=lambda record: record.key == order_id.encode(),
        memory=None,  # dead-lettered seconds ago: no age to check
        timeout_s=30,
    )

    assert len(replayed.send) == 1
    done = await wait_terminal(client, order_id)
    assert done["status"] == "COMPLETED"
    await ledger.assert_invariants()


CRASH_LINE = "injected crash after committing"


@pytest.mark.parametrize("service", ["order", "payment", "inventory", "shipping"])
async def test_a_crash_after_the_commit_restarts_the_service_which_does_nothing_twice(
    system: RunningSystem, service: str
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer(f"crash-{service}", "100.00")
    sku = await ledger.sku(f"crash-{service}", 10)
    group = instances(system.state_dir, service)
    before = system.restarts()
    duplicates_before = {i.name: await duplicates(system, i.url) for i in group}
    if service != "order":
        # Whichever payment instance owns the order's partition takes the fault.
        for each in group:
            await client.add_fault(each.url, "crash", count=1)

    order = await ledger.place(customer, [(sku, 3, "4.00")])
    order_id = order["order_id"]
    if service == "order":
        # The order service must answer the order first; its saga then has steps to go.
        await client.add_fault(client.urls.order, "crash", count=1, order_ids=[order_id])

    async def restarted() -> list[str]:
        now = system.restarts()
        return [i.name for i in group if now.get(i.name, 0) > before.get(i.name, 0)]

    crashed = await eventually(restarted, bool, what=f"a restart of {service}")
    for survivor in group:
        if survivor.name not in crashed:
            (await client.http.delete(f"{survivor.url}/faults")).raise_for_status()
    for each in group:
        await wait_ready(each)

    done = await wait_terminal(client, order_id, timeout=RESTART_TIMEOUT_S)
    assert done["status"] == "COMPLETED"
    logs = "\n".join(system.log(name) for name in crashed)
    crash_lines = [line for line in logs.splitlines() if CRASH_LINE in line]
    assert any(f"(order {order_id})" in line for line in crash_lines), crash_lines[-3:]
    # Its offset was not committed: the event came again (to the restarted process, whose
    # counters start from zero, or to the other payment instance) and was skipped...

    async def new_duplicates() -> float:
        total = 0.0
        for each in group:
            now = await duplicates(system, each.url)
            total += now if each.name in crashed else now - duplicates_before[each.name]
        return total

    await eventually(new_duplicates, lambda n: n >= 1, what="the redelivery skipped")
    # ...so it charged once, moved the stock once and shipped once.
    await ledger.assert_invariants(timeout=RESTART_TIMEOUT_S)
    assert await client.balance(customer) == 100 - 12
