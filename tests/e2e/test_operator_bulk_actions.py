"""Bulk actions end to end, against the four running services: a group of dead letters
counted, then replayed from the command line and from the explorer until their sagas
complete; the stuck sagas cancelled in bulk and compensated as a timeout.

The module runs a system of its own: a bulk cancel ends every stuck saga of the system, and
a group replay takes every dead letter of its group, the session's other tests' included.
Its tests run in order: each group replay takes its own test's dead letters only because
the test before replayed its own, and the bulk cancel comes last.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from shared.contracts.topics import existing_partitions
from tests.cli_support import Ran, Sagakit
from tests.e2e.conftest import RunningSystem, running_system
from tests.e2e.invariants import Ledger, dead_letters, eventually, wait_terminal
from tests.e2e.test_explorer_browser import Tab, browser, tab, ui
from tests.infra import Infrastructure

__all__ = ["browser", "tab"]  # the explorer tests' fixtures, used here too

ANN, ROB = "ann-operator-token", "rob-read-only-token"


@pytest.fixture(scope="module")
async def system(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    """This module's own system (a bulk cancel must not end the session's stuck sagas)."""
    settings = {
        "SAGAKIT_BULK_RATE_PER_SECOND": "50",
        "SAGAKIT_BULK_BATCH_SIZE": "2",
        "SAGAKIT_ADMIN_TOKENS": f"ann:operator:{ANN},rob:read-only:{ROB}",
    }
    async with running_system(infra, tmp_path_factory.mktemp("bulk"), settings) as running:
        # Ready is not settled (the groups may still be sharing out their partitions): one
        # saga end to end first, as tests/e2e/test_saga_deadlines.py does.
        ledger = Ledger(running.client)
        customer = await ledger.customer("bulk-warm-up", "10.00")
        sku = await ledger.sku("bulk-warm-up", 1)
        order = await ledger.place(customer, [(sku, 1, "1.00")])
        await wait_terminal(running.client, order["order_id"], timeout=90)
        yield running


@pytest.fixture
def sagakit(system: RunningSystem, tmp_path: Path) -> Sagakit:
    return Sagakit(system.env, tmp_path / "stack.env")


def succeeded(ran: Ran) -> Ran:
    assert ran.exit_code == 0, ran.stderr
    return ran


async def dead_lettered_at_inventory(system: RunningSystem, label: str, count: int) -> list[str]:
    """``count`` orders whose PaymentProcessed inventory dead-lettered: PAID and stuck."""
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer(label, "100.00")
    sku = await ledger.sku(label, 10)
    await client.add_fault(client.urls.inventory, "permanent", count=count)
    orders = [(await ledger.place(customer, [(sku, 1, "5.00")]))["order_id"] for _ in range(count)]
    dlq = system.topic("payment-processed-dlq")
    for order_id in orders:
        assert await dead_letters(system.kafka_bootstrap, dlq, order_id), order_id
        await eventually(
            lambda o=order_id: client.order(o), lambda o: o["status"] == "PAID", what="PAID"
        )
    return orders


async def topic_end(system: RunningSystem, topic: str) -> int:
    options = {"bootstrap_servers": system.kafka_bootstrap}
    partitions = (await existing_partitions(options))[topic]
    consumer = AIOKafkaConsumer(**options)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def stuck(system: RunningSystem, customer: str) -> list[dict[str, Any]]:
    params = {"stuck": "true", "customer_id": customer}
    response = await system.client.http.get(f"{system.client.urls.order}/orders", params=params)
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


async def bulk_actions(system: RunningSystem) -> list[dict[str, Any]]:
    response = await system.client.http.get(
        f"{system.client.urls.order}/bulk", headers={"Authorization": f"Bearer {ANN}"}
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def inventory_group(groups: list[dict[str, Any]], dlq: str) -> dict[str, Any]:
    (found,) = [g for g in groups if g["topic"] == dlq and g["error_type"] == "PermanentError"]
    return found


async def test_a_group_of_dead_letters_is_counted_then_replayed_from_the_cli_once(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    orders = await dead_lettered_at_inventory(system, "bulk-cli", 3)
    dlq, original = system.topic("payment-processed-dlq"), system.topic("payment-processed")

    async def groups() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = succeeded(await sagakit("dlq", "groups", "--json")).json()
        return found

    # The index reads the dead-letter topics at most once a second: the next read has them.
    listed = await eventually(
        groups, lambda found: any(g["topic"] == dlq for g in found), what="the group listed"
    )
    group = inventory_group(listed, dlq)
    selection = ["--group", group["consumer_group"], "--error-type", "PermanentError"]
    before = await topic_end(system, original)
    dry = succeeded(await sagakit("dlq", "replay-group", dlq, *selection, "--dry-run"))
    assert await topic_end(system, original) == before, "a dry run published"
    refused = await sagakit("dlq", "replay-group", dlq, *selection, input="n\n")
    replayed = succeeded(await sagakit("dlq", "replay-group", dlq, *selection, "--yes", "--wait"))
    done = [await wait_terminal(system.client, order_id) for order_id in orders]
    again = succeeded(await sagakit("dlq", "replay-group", dlq, *selection, "--dry-run"))
    listed = succeeded(await sagakit("bulk", "list", "--json")).json()

    assert (group["count"], group["orders"]) == (3, 3)
    assert group["consumer_group"].endswith("inventory")
    assert dry.stdout.splitlines()[0] == "3 dead letter(s)"
    assert all(order_id in dry.stdout for order_id in orders)
    assert refused.exit_code == 1 and "nothing done" in refused.stderr
    assert "replay 3 dead letter(s)?" in refused.stdout
    assert "done: 3 of 3 (3 replayed)" in replayed.stdout
    assert [order["status"] for order in done] == ["COMPLETED"] * 3
    assert again.stdout.splitlines()[0] == "0 dead letter(s)"  # sent once, never again
    assert [a["kind"] for a in listed].count("replay") == 1
    await Ledger(system.client).assert_invariants()


async def test_a_group_replayed_from_the_explorer_shows_its_count_first_and_completes(
    system: RunningSystem, tab: Tab
) -> None:
    orders = await dead_lettered_at_inventory(system, "bulk-page", 2)
    dlq = system.topic("payment-processed-dlq")

    await tab.goto(ui(system, "/dead-letters/groups"))
    row = await tab.shows(f"tr.dlq-group[data-topic='{dlq}'][data-error='PermanentError']")
    assert (await row.locator("td.records").inner_text()) == "2"
    await tab.screenshot("dead-letter-groups")

    # A read-only token sees the count (a dry run changes nothing), and is refused the replay.
    actions_before = len(await bulk_actions(system))
    await row.locator("button.replay-group").click()
    await tab.page.fill("#token-input", ROB)
    await tab.page.click("#token-ok")
    await tab.shows("#bulk-summary", has_text="Replay 2 dead letter(s)")
    await tab.page.click("#bulk-ok")
    await tab.shows("#notice.bad", has_text="the admin token 'rob' is read-only")
    # Chromium reports the refused request on the console: that one, and only it, expected.
    refused = [e for e in tab.errors if "status of 403" in e]
    assert len(refused) == 1, tab.errors
    tab.errors.remove(refused[0])
    assert len(await bulk_actions(system)) == actions_before  # nothing started

    # An operator's token: the token is asked again (the refused one was forgotten).
    await row.locator("button.replay-group").click()
    await tab.page.fill("#token-input", ANN)
    await tab.page.click("#token-ok")
    summary = await tab.shows("#bulk-summary")
    assert await summary.inner_text() == "Replay 2 dead letter(s) of 2 saga(s)?"
    sagas = await tab.page.inner_text("#bulk-sagas")
    assert all(order_id in sagas for order_id in orders)
    await tab.screenshot("dead-letter-groups-confirm")  # docs/img/explorer-dead-letter-groups.png
    await tab.page.click("#bulk-ok")
    await tab.shows("#notice:not(.bad)", has_text="replaying 2 dead letter(s)")
    done = [await wait_terminal(system.client, order_id) for order_id in orders]
    await tab.shows("tr.bulk-action td.state", has_text="finished")
    await tab.goto(ui(system, "/audit"))
    entry = await tab.shows("tr.audit-entry[data-action='bulk.replay.started'][data-who='ann']")
    assert await entry.locator("td.count-done").inner_text() == "2"
    await tab.screenshot("audit")  # docs/img/explorer-audit.png

    assert [order["status"] for order in done] == ["COMPLETED"] * 2
    await Ledger(system.client).assert_invariants()


async def test_a_read_only_token_may_look_but_not_act_and_an_operators_faults_are_audited(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    client = system.client
    order_url, inventory = client.urls.order, client.urls.inventory
    dlq = system.topic("payment-processed-dlq")

    async def call(method: str, url: str, token: str, body: Any = None) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        response = await client.http.request(method, url, headers=headers, json=body)
        return response.status_code

    looked = [
        await call("GET", f"{order_url}/bulk", ROB),
        await call("GET", f"{order_url}/bulk/replay?topic={dlq}", ROB),  # a dry run
        await call("GET", f"{order_url}/bulk/cancel-stuck", ROB),
    ]
    refused = [
        await call("POST", f"{order_url}/bulk/replay", ROB, {"topic": dlq}),
        await call("POST", f"{order_url}/bulk/cancel-stuck", ROB, {}),
        await call("POST", f"{inventory}/faults", ROB, {"kind": "permanent", "count": 1}),
    ]
    injected = await call("POST", f"{inventory}/faults", ANN, {"kind": "permanent", "count": 1})
    cleared = await call("DELETE", f"{inventory}/faults", ANN)

    assert (looked, refused, injected, cleared) == ([200] * 3, [403] * 3, 201, 204)

    async def faults_audited() -> list[dict[str, Any]]:
        ran = succeeded(await sagakit("audit", "--json", "--who", "ann", "--action", "fault"))
        return ran.json_lines()

    entries = await eventually(faults_audited, lambda found: len(found) == 2, what="audited")
    assert [(e["action"], e["count"]) for e in entries] == [
        ("faults.cleared", 1),
        ("fault.injected", 1),
    ]
    assert all(e["by"].startswith("inventory/") for e in entries)
    everyone = {e["who"] for e in succeeded(await sagakit("audit", "--json")).json_lines()}
    assert "rob" not in everyone  # refused: nothing done, nothing recorded


async def test_stuck_sagas_are_cancelled_in_bulk_and_compensated_as_a_timeout(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    client = system.client
    orders = await dead_lettered_at_inventory(system, "bulk-cancel", 2)
    customer = (await client.order(orders[0]))["customer_id"]
    # The index reads the dead-letter topics at most once a second: wait until both are stuck.
    await eventually(
        lambda: stuck(system, customer), lambda found: len(found) == 2, what="both stuck"
    )

    dry = succeeded(await sagakit("sagas", "cancel-stuck", "--dry-run"))
    ran = succeeded(await sagakit("sagas", "cancel-stuck", "--yes", "--wait", "--json"))
    ended = [await wait_terminal(client, order_id) for order_id in orders]

    assert dry.stdout.splitlines()[0] == "2 stuck saga(s)"
    assert all(order_id in dry.stdout for order_id in orders)
    progress = ran.json()["progress"]
    assert (progress["total"], progress["outcomes"]) == (2, {"cancelled": 2})
    assert [(o["status"], o["cancel_reason"]) for o in ended] == [("CANCELLED", "timed_out")] * 2
    # Compensated as after a timeout: what was charged comes back.
    await eventually(
        lambda: client.balance(customer), lambda balance: balance == 100, what="refunded"
    )
    await Ledger(client).assert_invariants()


async def test_stuck_sagas_are_cancelled_from_the_explorer_after_their_count_and_ids(
    system: RunningSystem, tab: Tab
) -> None:
    client = system.client
    orders = await dead_lettered_at_inventory(system, "bulk-cancel-page", 2)
    customer = (await client.order(orders[0]))["customer_id"]
    await eventually(
        lambda: stuck(system, customer), lambda found: len(found) == 2, what="both stuck"
    )

    await tab.goto(ui(system))
    await tab.page.click("#cancel-stuck")
    await tab.page.fill("#token-input", ANN)
    await tab.page.click("#token-ok")
    summary = await tab.shows("#bulk-summary", has_text="stuck saga(s) as timed out?")
    assert (await summary.inner_text()).startswith("Cancel ")
    sagas = await tab.page.inner_text("#bulk-sagas")
    assert all(order_id in sagas for order_id in orders)
    assert await tab.page.inner_text("#bulk-ok") == "cancel them"
    await tab.page.click("#bulk-ok")
    await tab.shows("#notice:not(.bad)", has_text="cancelling")
    ended = [await wait_terminal(client, order_id) for order_id in orders]

    assert [(o["status"], o["cancel_reason"]) for o in ended] == [("CANCELLED", "timed_out")] * 2
    await eventually(
        lambda: client.balance(customer), lambda balance: balance == 100, what="refunded"
    )
    await Ledger(client).assert_invariants()
