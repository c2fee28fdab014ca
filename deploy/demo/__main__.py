"""``make demo``: the saga's flows and failures, shown on the running system.

Run as ``python -m deploy.demo [STACK_ENV]`` (default ``.stack/stack.env``) once ``make up``
has started everything. Each scenario drives the system over HTTP exactly as a user would,
then prints what happened; the system is left running for you to try.

A service shows itself by a ``services/<name>/demo.py`` of its own: its ``SCENARIOS``, a
list of (title, ``async def scenario(env)``) pairs, run after the saga's with the stack's
settings (its ``SAGAKIT_<NAME>_URL`` among them, and the supervisor's folder as
``SAGAKIT_SUPERVISOR_DIR`` on a local stack, to hold an instance), printing what they show
(``deploy.demo.show``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.demo.client import SagaClient, SystemUrls
from deploy.demo.show import say, short, table
from deploy.localstack.declared import companion_slots, declared_services
from deploy.localstack.supervisor import STATE_DIR_VAR, read_status
from shared.envfile import read_env_file
from shared.ops.cli.config import Config
from shared.ops.cli.dlq import dlq_summary, print_dlq_summary
from shared.ops.cli.groups import group_report, print_group_report
from shared.ops.cli.output import CliError
from shared.settings import PlatformSettings, kafka_client_options

RUN = uuid.uuid4().hex[:6]
Scenario = Callable[[SagaClient, dict[str, str]], Awaitable[None]]
ServiceScenario = Callable[[Mapping[str, str]], Awaitable[None]]
"""A scenario a service declares in its ``demo.py``: it is given the stack's settings."""


async def show_order(client: SagaClient, order: dict[str, Any]) -> None:
    reason = f" ({order['cancel_reason']})" if order["cancel_reason"] else ""
    say(
        f"  order {short(order['order_id'])}  total {order['total']}  ->  {order['status']}{reason}"
    )
    events = await settled_timeline(client, order["order_id"])
    table(
        [
            [str(i), e["event_type"], e["producer"], e["occurred_at"][11:23]]
            for i, e in enumerate(events, 1)
        ],
        ["#", "event", "producer", "at (UTC)"],
    )


async def settled_timeline(client: SagaClient, order_id: str) -> list[dict[str, Any]]:
    """The timeline once its read model has caught up with the order's last event.

    The timeline is a separate consumer group: it may trail the order's status by a moment.
    """
    for _ in range(50):
        events = await client.timeline(order_id)
        if events and events[-1]["event_type"] in ("OrderCompleted", "OrderCancelled"):
            return events
        await asyncio.sleep(0.1)
    return events


def stock_text(stock: dict[str, Any]) -> str:
    return (
        f"available {stock['available']}, reserved {stock['reserved']}, shipped {stock['shipped']}"
    )


async def settled_stock(client: SagaClient, sku: str) -> str:
    """The sku's stock once no reservation is in flight: inventory moves reserved stock to
    shipped when it reads OrderShipped, a moment after the order completes (or, after a
    crash, once the restarted instance has rejoined its consumer group)."""
    for _ in range(300):
        stock = await client.stock(sku)
        if stock["reserved"] == 0:
            break
        await asyncio.sleep(0.1)
    return stock_text(stock)


async def fresh_customer(client: SagaClient, name: str, balance: str) -> str:
    customer = f"{name}-{RUN}"
    await client.set_balance(customer, balance)
    return customer


async def fresh_sku(client: SagaClient, name: str, available: int) -> str:
    sku = f"{name}-{RUN}"
    await client.set_stock(sku, available)
    return sku


async def completed(client: SagaClient, env: dict[str, str]) -> None:
    alice = await fresh_customer(client, "alice", "100.00")
    mug = await fresh_sku(client, "mug", 10)
    order = await client.place_order(alice, [(mug, 2, "12.50")])
    await show_order(client, await client.wait_terminal(order["order_id"]))
    say(
        f"  alice's balance 100.00 -> {await client.balance(alice)}; "
        f"stock of mug: {await settled_stock(client, mug)}"
    )


async def declined(client: SagaClient, env: dict[str, str]) -> None:
    bob = await fresh_customer(client, "bob", "5.00")
    mug = await fresh_sku(client, "mug2", 10)
    order = await client.place_order(bob, [(mug, 1, "20.00")])
    await show_order(client, await client.wait_terminal(order["order_id"]))
    say(
        f"  bob's balance stays {await client.balance(bob)}; payment: "
        f"{(await client.payment(order['order_id']) or {}).get('status')}"
    )


async def out_of_stock(client: SagaClient, env: dict[str, str]) -> None:
    carol = await fresh_customer(client, "carol", "100.00")
    lamp = await fresh_sku(client, "lamp", 1)
    order = await client.place_order(carol, [(lamp, 3, "10.00")])
    await show_order(client, await client.wait_terminal(order["order_id"]))
    say(
        f"  charged then refunded: carol's balance is back to {await client.balance(carol)}; "
        f"payment {(await client.payment(order['order_id']) or {}).get('status')}"
    )


async def shipping_failed(client: SagaClient, env: dict[str, str]) -> None:
    dave = await fresh_customer(client, "dave", "100.00")
    desk = await fresh_sku(client, "desk", 5)
    await client.add_fault(client.urls.shipping, "fail", count=1)
    say("  shipping will fail the next shipment")
    order = await client.place_order(dave, [(desk, 1, "40.00")])
    done = await client.wait_terminal(order["order_id"])
    await show_order(client, done)
    say(
        f"  stock of desk: {await settled_stock(client, desk)}; "
        f"dave's balance {await client.balance(dave)}"
    )


async def transient(client: SagaClient, env: dict[str, str]) -> None:
    erin = await fresh_customer(client, "erin", "100.00")
    pen = await fresh_sku(client, "pen", 10)
    await client.add_fault(client.urls.inventory, "transient", count=2)
    say("  inventory will fail twice with a transient error (the retry limit is 3)")
    order = await client.place_order(erin, [(pen, 1, "2.00")])
    await show_order(client, await client.wait_terminal(order["order_id"]))
    await client.clear_faults()


async def crash(client: SagaClient, env: dict[str, str]) -> None:
    frank = await fresh_customer(client, "frank", "100.00")
    cup = await fresh_sku(client, "cup", 10)
    before = _restarts()
    await client.add_fault(client.urls.inventory, "crash", count=1)
    say("  inventory will exit abruptly after committing the reservation, before the offset commit")
    order = await client.place_order(frank, [(cup, 3, "4.00")])
    done = await client.wait_terminal(order["order_id"], timeout=60)
    await show_order(client, done)
    after = _restarts()
    say(
        f"  inventory restarts: {before.get('inventory', 0)} -> {after.get('inventory', 0)}; "
        f"the redelivered event was skipped: stock {await settled_stock(client, cup)}"
    )


async def poison(client: SagaClient, env: dict[str, str]) -> None:
    kafka = _kafka_options(env)
    topic = env.get("SAGAKIT_TOPIC_PREFIX", "") + "order-created"
    producer = AIOKafkaProducer(**kafka, acks="all")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"\x00 this is not an event", key=b"poison")
    finally:
        await producer.stop()
    say(f"  wrote garbage to {topic} (partition {sent.partition}, offset {sent.offset})")
    grace = await fresh_customer(client, "grace", "100.00")
    book = await fresh_sku(client, "book", 10)
    order = await client.place_order(grace, [(book, 1, "9.00")])
    done = await client.wait_terminal(order["order_id"])
    say(f"  an order placed right after it: {done['status']}")
    group = (env.get("SAGAKIT_TOPIC_PREFIX", "") + "payment").encode()
    record = await _find_dead_letter(kafka, f"{topic}-dlq", sent.partition, sent.offset, group)
    if record is None:
        say("  (the dead letter did not show up within 15 s: check the payment logs)")
        return
    headers = {k: v.decode() for k, v in record.headers if k.startswith("dlq.")}
    table([[k, v[:70]] for k, v in headers.items()], ["header", "value"])


def _kafka_options(env: dict[str, str]) -> dict[str, Any]:
    """The stack's Kafka connection (bootstrap, and SASL credentials when it has them)."""
    kafka = {k.removeprefix("SAGAKIT_").lower(): v for k, v in env.items() if "_KAFKA_" in k}
    return kafka_client_options(PlatformSettings.model_validate(kafka | {"service_name": "demo"}))


async def _find_dead_letter(
    kafka: dict[str, Any], topic: str, partition: int, offset: int, group: bytes
) -> Any:
    consumer = AIOKafkaConsumer(
        topic,
        **kafka,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    original = dict(record.headers)
                    if (
                        original.get("dlq.consumer.group") == group
                        and original.get("dlq.original.partition") == str(partition).encode()
                        and original.get("dlq.original.offset") == str(offset).encode()
                    ):
                        return record
        return None
    finally:
        await consumer.stop()


async def partitions(client: SagaClient, env: dict[str, str]) -> None:
    rows = []
    for url in client.urls.instances:
        health = await client.health(url)
        for group, by_topic in sorted(health.get("partitions", {}).items()):
            # Partitions of a group's topics are assigned alike (range assignor): one list.
            owned = {",".join(map(str, assigned)) for assigned in by_topic.values()}
            listed = owned.pop() if len(owned) == 1 else "; ".join(sorted(owned))
            rows.append([health["instance"], group, str(len(by_topic)), listed])
    table(rows, ["instance", "consumer group", "topics", "partitions of each topic"])
    say("  the two payment instances share their group's partitions; every other group")
    say("  (analytics reads every topic) gets each event too: pub/sub next to load balancing")


async def left_stuck(client: SagaClient, env: dict[str, str]) -> None:
    heidi = await fresh_customer(client, "heidi", "100.00")
    vase = await fresh_sku(client, "vase", 5)
    await client.add_fault(client.urls.inventory, "permanent", count=1)
    say("  inventory will fail the next event for good: it goes to its dead-letter topic")
    order = await client.place_order(heidi, [(vase, 1, "30.00")])
    stuck = await _wait_stuck(client, heidi)
    if not stuck:
        say("  (the saga was not listed as stuck within 15 s: check the inventory log)")
        return
    say(
        f"  order {short(order['order_id'])} stays {stuck[0]['status']}: its PaymentProcessed "
        "is dead-lettered, so GET /orders?stuck=true lists it"
    )
    say(f"  look at it, and replay it from the page: {_explorer(env)}/orders/{order['order_id']}")


async def _wait_stuck(client: SagaClient, customer_id: str) -> list[dict[str, Any]]:
    for _ in range(150):
        stuck = await client.orders(stuck=True, customer_id=customer_id)
        if stuck:
            return stuck
        await asyncio.sleep(0.1)
    return []


def _explorer(env: dict[str, str]) -> str:
    return f"{env['SAGAKIT_ORDER_URL']}/ui"


def _restarts() -> dict[str, int]:
    return {str(i["name"]): int(str(i["restarts"])) for i in read_status(_state_dir())}


def _state_dir() -> Path:
    return Path(_env_file()).parent / "services"


def _env_file() -> str:
    return sys.argv[1] if len(sys.argv) > 1 else ".stack/stack.env"


SCENARIOS: list[tuple[str, Scenario]] = [
    ("A completed order and its timeline", completed),
    ("A declined payment", declined),
    ("Out of stock: the payment is refunded", out_of_stock),
    ("A failed shipment: stock released and payment refunded", shipping_failed),
    ("A transient fault, retried, and the saga completes", transient),
    ("A crash mid-handler: the restarted service does nothing twice", crash),
    ("A poison message goes to its dead-letter topic; sagas go on", poison),
    ("Load balancing: which instance holds which partitions", partitions),
    ("A saga left stuck, for the explorer: its event dead-lettered", left_stuck),
]


def services_scenarios() -> list[tuple[str, Scenario]]:
    """The ``SCENARIOS`` of every ``services/<name>/demo.py``, by the services' declared port."""
    found: list[tuple[str, Scenario]] = []
    for service in declared_services():
        module = f"services.{service.name}.demo"
        if importlib.util.find_spec(module) is None:
            continue
        declared: list[tuple[str, ServiceScenario]] = importlib.import_module(module).SCENARIOS
        found += [(title, _given_env(scenario)) for title, scenario in declared]
    return found


def _given_env(scenario: ServiceScenario) -> Scenario:
    async def run(_: SagaClient, env: dict[str, str]) -> None:
        supervised = _state_dir()
        if STATE_DIR_VAR not in env and supervised.is_dir():
            env = env | {STATE_DIR_VAR: str(supervised)}
        await scenario(env)

    return run


async def main(env: dict[str, str]) -> None:
    async with SagaClient(SystemUrls.from_env(env)) as client:
        await client.clear_faults()
        scenarios = [*SCENARIOS, *services_scenarios()]
        for number, (title, scenario) in enumerate(scenarios, 1):
            say(f"\n[{number}/{len(scenarios)}] {title}")
            started = time.monotonic()
            await scenario(client, env)
            say(f"  ({time.monotonic() - started:.1f} s)")
    await operator_view(env, Path(_env_file()))
    say("\nEverything is still running. Try it:")
    say(f"  explorer      {_explorer(env)}  (sagas, dead letters, consumer groups)")
    async with SagaClient(SystemUrls.from_env(env)) as client:
        for order in await client.orders(stuck=True, limit=1):
            say(f"  stuck saga    {_explorer(env)}/orders/{order['order_id']}")
    say(f"  API docs      {env['SAGAKIT_ORDER_URL']}/docs")
    for service in declared_services():
        say(f"  {service.name:<13} {env[service.url_var]}  (admin token in {_env_file()})")
    for slot in companion_slots():
        if (url := env.get(slot.companion.url_var)) is not None:
            say(f"  {slot.companion.name}  {url}  (beside {slot.service})")
    say(f"  all instances {env['SAGAKIT_INSTANCE_URLS']}")
    say("  make status   what runs where;  make down   stop it all")
    say("  sagakit --help   topics, tail, consumer groups and lag, dead letters, orders")


async def operator_view(env: dict[str, str], env_file: Path) -> None:
    """What an operator sees now: the order service's consumer group and the dead letters,
    as ``sagakit groups describe`` and ``sagakit dlq list`` print them."""
    cfg = Config(env_file=env_file)
    group = env.get("SAGAKIT_TOPIC_PREFIX", "") + "order"
    say(f"\n$ sagakit groups describe {group}")
    try:
        print_group_report(await group_report(cfg, group))
    except CliError as error:
        say(f"sagakit: {error.format_message()}")
    say("\n$ sagakit dlq list")
    try:
        print_dlq_summary(await dlq_summary(cfg))
    except CliError as error:
        say(f"sagakit: {error.format_message()}")


if __name__ == "__main__":
    asyncio.run(main(read_env_file(_env_file())))
