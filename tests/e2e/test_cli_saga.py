"""sagakit against the four running services: a dead letter replayed until its saga
completes (and replayed again to no effect), one order's events out of every topic, the
order API's commands, and a service's consumer group."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from deploy.demo.__main__ import operator_view
from services.events import CATALOGUE
from shared.contracts.errors import PermanentError
from shared.contracts.topics import Topics, existing_partitions
from shared.publishing.dlq import dead_letter_headers
from tests.cli_support import Ran, Sagakit
from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import Ledger, dead_letters, eventually, wait_terminal

COMPLETED_SAGA = [
    "OrderCreated",
    "PaymentProcessed",
    "InventoryReserved",
    "OrderShipped",
    "OrderCompleted",
]


@pytest.fixture
def sagakit(system: RunningSystem, tmp_path: Path) -> Sagakit:
    return Sagakit(system.env, tmp_path / "stack.env")


async def duplicates(system: RunningSystem, url: str) -> float:
    """The events one instance skipped as duplicates, over every group and topic."""
    text = (await system.client.http.get(f"{url}/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sagakit_consumer_events_total"
        and sample.labels.get("outcome") == "duplicate"
    )


async def topic_end(system: RunningSystem, topic: str) -> int:
    """The records ever written to ``topic``: the sum of its partitions' end offsets."""
    options = {"bootstrap_servers": system.kafka_bootstrap}
    partitions = (await existing_partitions(options))[topic]
    consumer = AIOKafkaConsumer(**options)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def succeeded(ran: Ran) -> Ran:
    assert ran.exit_code == 0, ran.stderr
    return ran


async def test_a_dead_letter_replayed_with_the_cli_completes_its_saga_and_again_changes_nothing(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    client, ledger = system.client, Ledger(system.client)
    customer = await ledger.customer("cli-replay", "100.00")
    sku = await ledger.sku("cli-replay", 10)
    await client.add_fault(client.urls.inventory, "permanent", count=1)
    order_id = (await ledger.place(customer, [(sku, 2, "7.50")]))["order_id"]
    dlq = system.topic("payment-processed-dlq")
    assert await dead_letters(system.kafka_bootstrap, dlq, order_id), f"no dead letter in {dlq}"
    await eventually(lambda: client.order(order_id), lambda o: o["status"] == "PAID", what="PAID")

    listed = succeeded(await sagakit("dlq", "list", "--json")).json()
    original = system.topic("payment-processed")
    records_before = await topic_end(system, original)
    planned = succeeded(await sagakit("dlq", "replay", dlq, "--order-id", order_id, "--dry-run"))
    # A replay has published (and been acknowledged) before the command returns: had the dry
    # run sent anything, the topic's end would have moved by now.
    assert await topic_end(system, original) == records_before, "a dry run published"
    replayed = succeeded(await sagakit("dlq", "replay", dlq, "--order-id", order_id, "--json"))
    done = await wait_terminal(client, order_id)

    row = next(row for row in listed if row["topic"] == dlq)
    assert row["count"] >= 1 and "PermanentError" in row["error_types"]
    assert planned.stdout.splitlines()[-1] == f"would replay 1 dead letter(s) from {dlq}"
    (record,) = replayed.json()["records"]
    assert (record["to"], record["key"]) == (system.topic("payment-processed"), order_id)
    assert record["event_type"] == "PaymentProcessed"
    assert done["status"] == "COMPLETED"
    await ledger.assert_invariants()

    # Again: the copy reaches inventory, which has handled that event, and skips it.
    skipped_before = await duplicates(system, client.urls.inventory)
    again = succeeded(await sagakit("dlq", "replay", dlq, "--event-id", record["event_id"]))
    await eventually(
        lambda: duplicates(system, client.urls.inventory),
        lambda n: n > skipped_before,
        what="the second copy skipped by inventory",
    )

    assert again.stdout.splitlines()[-1] == f"replayed 1 dead letter(s) from {dlq}"
    await ledger.assert_invariants()  # charged once, reserved and shipped once
    assert await client.balance(customer) == 100 - 15
    timeline = [e["event_type"] for e in await client.timeline(order_id)]
    assert timeline.count("InventoryReserved") == timeline.count("OrderCompleted") == 1


async def test_tail_from_the_beginning_with_a_key_shows_exactly_one_orders_events(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("cli-tail", "100.00")
    sku = await ledger.sku("cli-tail", 10)
    mine = (await ledger.place(customer, [(sku, 1, "3.00")]))["order_id"]
    await ledger.place(customer, [(sku, 1, "4.00")])  # another order, not to be shown
    await ledger.assert_invariants()
    topics = Topics(CATALOGUE, system.env["SAGAKIT_TOPIC_PREFIX"]).all(include_dlq=False)

    shown = succeeded(await sagakit("tail", *topics, "--from-beginning", "--key", mine, "--json"))

    records = shown.json_lines()
    assert {r["key"] for r in records} == {mine}
    assert [r["value"]["event_type"] for r in records] == COMPLETED_SAGA
    timeline = await system.client.timeline(mine)
    assert [r["value"]["event_id"] for r in records] == [e["event_id"] for e in timeline]
    assert all(r["headers"]["event_id"] == r["value"]["event_id"] for r in records)


async def test_the_orders_commands_drive_the_order_api(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("cli-orders", "50.00")
    sku = await ledger.sku("cli-orders", 5)

    created = succeeded(
        await sagakit(
            "orders", "create", "--customer", customer, "--item", f"{sku}:2:3.00", "--json"
        )
    ).json()
    order_id = created["order_id"]
    ledger.orders[order_id] = created
    await ledger.assert_invariants()
    shown = succeeded(await sagakit("orders", "show", order_id, "--json")).json()
    timeline = succeeded(await sagakit("orders", "timeline", order_id, "--json")).json()
    listed = succeeded(await sagakit("orders", "list", "--status", "completed", "--json")).json()
    printed = succeeded(await sagakit.script("orders", "show", order_id))
    unknown = await sagakit("orders", "show", "no-such-order")
    refused = await sagakit("orders", "create", "--customer", customer, "--item", f"{sku}:0:3.00")

    assert (created["customer_id"], created["total"]) == (customer, "6.00")
    assert shown["status"] == "COMPLETED"
    assert [e["event_type"] for e in timeline][-1] == "OrderCompleted"
    assert order_id in [o["order_id"] for o in listed]
    assert printed.stdout.splitlines()[0] == f"order {order_id}: COMPLETED, total 6.00"
    assert unknown.exit_code == 1
    assert unknown.error_lines == ["sagakit: not found: GET /orders/no-such-order"]
    assert refused.exit_code == 1 and len(refused.error_lines) == 1
    assert refused.stderr.startswith("sagakit: the order API refused it: items.0.quantity")


async def test_groups_describe_shows_the_two_payment_instances_and_no_lag_once_settled(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    group = system.topic("payment")  # groups carry the prefix as topics do

    async def described() -> dict[str, Any]:
        found: dict[str, Any] = succeeded(
            await sagakit("groups", "describe", group, "--json")
        ).json()
        return found

    settled = await eventually(
        described,
        lambda g: g["state"] == "Stable" and len(g["members"]) == 2 and g["lag"] == 0,
        timeout=60,
        what=f"{group} stable with two members and no lag",
    )

    owned = [p for m in settled["members"] for p in m["partitions"]]
    assert len(owned) == len(set(owned))  # each partition has one owner
    assert {p["topic"] for p in settled["partitions"]} >= {system.topic("order-created")}


async def test_the_demo_ends_with_the_order_group_and_the_dead_letters(
    system: RunningSystem, sagakit: Sagakit, capsys: pytest.CaptureFixture[str]
) -> None:
    await operator_view(system.env, sagakit.env_file)

    printed = capsys.readouterr().out
    group = system.topic("order")
    assert f"$ sagakit groups describe {group}\ngroup {group}: Stable, 1 member(s)" in printed
    assert "$ sagakit dlq list\n" in printed
    assert system.topic("payment-processed-dlq") in printed  # the services created every DLQ


async def test_a_dead_letter_older_than_the_inbox_remembers_is_refused_by_the_cli_and_the_explorer(
    system: RunningSystem, sagakit: Sagakit
) -> None:
    topic, dlq = system.topic("payment-processed"), system.topic("payment-processed-dlq")
    order_id = f"old-{uuid.uuid4().hex[:8]}"
    value = json.dumps({"event_id": str(uuid.uuid4()), "order_id": order_id}).encode()
    read: Any = ConsumerRecord(topic, 0, 5, 0, 0, order_id.encode(), value, None, 0, 0, [])
    headers = dead_letter_headers(
        read,
        group=system.topic("inventory"),
        error=PermanentError("no such sku"),
        attempts=1,
        failed_at=datetime.now(UTC) - timedelta(days=9, hours=1),  # the inbox keeps 7 days
    )
    producer = AIOKafkaProducer(bootstrap_servers=system.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        stored = await producer.send_and_wait(dlq, value, key=order_id.encode(), headers=headers)
    finally:
        await producer.stop()

    refused = succeeded(await sagakit("dlq", "replay", dlq, "--order-id", order_id))
    token = {"Authorization": f"Bearer {system.env['SAGAKIT_ADMIN_TOKEN']}"}
    where = {"topic": dlq, "partition": stored.partition, "offset": stored.offset}
    answer = await system.client.http.post(
        f"{system.client.urls.order}/ui/replay", json=where, headers=token
    )

    reason = (
        f"{dlq}[{stored.partition}]@{stored.offset}: dead-lettered 9 days ago, past the "
        "inbox's 7-day memory: replaying it could apply it twice"
    )
    assert refused.stdout.splitlines()[-1] == f"replayed 0 dead letter(s) from {dlq}"
    assert f"refused {reason}" in refused.stdout
    assert answer.status_code == 409 and reason in answer.json()["detail"]
    tail = succeeded(await sagakit("tail", topic, "--from-beginning", "--key", order_id, "--json"))
    assert tail.stdout == ""  # nothing was sent
