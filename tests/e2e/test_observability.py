"""What an operator sees of the running system: metrics Prometheus can parse and that move
as orders flow, one trace id per saga on every event, JSON log lines naming the event."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.observability.tracing import TraceParent, header_of
from tests.e2e.conftest import RunningSystem
from tests.e2e.invariants import Ledger, ServiceInstance, eventually, instances, wait_terminal
from tests.e2e.scrape import Scrape, scrape

DASHBOARD = Path(__file__).parents[2] / "deploy/grafana/dashboards/sagakit.json"
COMPLETED_SAGA = (
    "order-created",
    "payment-processed",
    "inventory-reserved",
    "order-shipped",
    "order-completed",
)
EVENT_IDS = (
    "service",
    "instance",
    "event_type",
    "event_id",
    "order_id",
    "correlation_id",
    "topic",
    "partition",
    "offset",
)
ORDERS = 5


async def scrape_all(system: RunningSystem) -> dict[str, Scrape]:
    return {i.name: await scrape(system.client.http, i.url) for i in instances(system.state_dir)}


def grew(
    before: dict[str, Scrape],
    after: dict[str, Scrape],
    names: list[str],
    metric: str,
    **labels: str,
) -> float:
    """How much ``metric`` (with ``labels``) grew, summed over the instances ``names``."""
    return sum(after[n].total(metric, **labels) - before[n].total(metric, **labels) for n in names)


def names_of(system: RunningSystem, service: str) -> list[str]:
    return [i.name for i in instances(system.state_dir, service)]


async def test_every_instance_serves_metrics_prometheus_parses_and_they_move_with_orders(
    system: RunningSystem,
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("metrics", "1000.00")
    sku = await ledger.sku("metrics", 100)
    before = await scrape_all(system)
    for _ in range(ORDERS):
        await ledger.place(customer, [(sku, 1, "2.00")])
    await ledger.settle()
    after = await scrape_all(system)

    for each in instances(system.state_dir):
        metrics = after[each.name]
        assert metrics.types["sagakit_consumer_events"] == "counter"
        assert metrics.types["sagakit_handler_duration_seconds"] == "histogram"
        assert metrics.types["sagakit_consumer_lag_records"] == "gauge"
        assert metrics.types["sagakit_http_request_duration_seconds"] == "histogram"
        assert metrics.series("sagakit_dlq_records") and metrics.series(
            "sagakit_outbox_unsent_rows"
        )
        for samples in metrics.samples.values():
            for sample in samples:
                if sample.name.startswith("sagakit_"):
                    assert sample.labels["service"] == each.service, sample
                    assert sample.labels["instance"] == each.name, sample

    events, ok = "sagakit_consumer_events_total", {"outcome": "ok"}
    order, payment = names_of(system, "order"), names_of(system, "payment")
    saga_group = system.topic("order")  # the prefix names groups too
    assert grew(before, after, order, events, group=saga_group, **ok) >= 3 * ORDERS
    assert grew(before, after, payment, events, topic=system.topic("order-created"), **ok) >= (
        ORDERS
    )
    inventory, shipping = names_of(system, "inventory"), names_of(system, "shipping")
    assert grew(
        before, after, inventory, events, topic=system.topic("payment-processed"), **ok
    ) >= (ORDERS)
    assert grew(
        before, after, shipping, events, topic=system.topic("inventory-reserved"), **ok
    ) >= (ORDERS)
    for service in ("order", "payment", "inventory", "shipping"):
        handled = "sagakit_handler_duration_seconds_count"
        assert grew(before, after, names_of(system, service), handled) >= 1, service
    posted = {"method": "POST", "route": "/orders", "status": "202"}
    assert grew(before, after, order, "sagakit_http_request_duration_seconds_count", **posted) == (
        ORDERS
    )
    # OrderCreated and OrderCompleted of each order left the order service's outbox.
    published = "sagakit_outbox_publish_duration_seconds_count"
    assert grew(before, after, order, published) >= 2 * ORDERS

    async def completed() -> float:
        return (await scrape(system.client.http, system.client.urls.order)).total(
            "sagakit_orders", status="COMPLETED"
        )

    # Counted at most every 15 s: the gauge catches up within that.
    await eventually(completed, lambda n: n >= ORDERS, what="the saga counts")

    # Every metric the dashboard queries is one the services expose.
    panels = json.loads(DASHBOARD.read_text())["panels"]
    expressions = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    queried = set(re.findall(r"sagakit_[a-z_]+", expressions))
    exposed = {name for metrics in after.values() for name in metrics.samples}
    assert queried - exposed == set()


async def test_the_consumer_lag_rises_while_shipping_is_slow_and_falls_back_to_zero(
    system: RunningSystem,
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("lag", "1000.00")
    sku = await ledger.sku("lag", 100)
    (shipping,) = instances(system.state_dir, "shipping")
    await system.client.add_fault(shipping.url, "delay", delay_ms=1500, count=ORDERS)

    async def lag() -> float:
        metrics = await scrape(system.client.http, shipping.url)
        return metrics.total(
            "sagakit_consumer_lag_records", topic=system.topic("inventory-reserved")
        )

    orders = [await ledger.place(customer, [(sku, 1, "1.00")]) for _ in range(ORDERS)]
    await eventually(lag, lambda n: n > 0, what="shipping's lag above zero")
    for placed in orders:
        await wait_terminal(system.client, placed["order_id"], timeout=60)
    await eventually(lag, lambda n: n == 0, what="shipping's lag back to zero")


async def saga_records(system: RunningSystem, order_id: str) -> dict[str, Any]:
    """The record of each of the completed saga's topics for ``order_id``."""
    topics = {system.topic(name): name for name in COMPLETED_SAGA}
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=system.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 30
        while len(found) < len(topics) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == order_id.encode():
                        found[topics[record.topic]] = record
    finally:
        await consumer.stop()
    assert found.keys() == set(COMPLETED_SAGA), found.keys()
    return found


def trace_of(record: Any) -> TraceParent:
    context = header_of(record.headers)
    assert context is not None, record.headers
    return context


async def test_one_trace_id_follows_an_order_from_its_first_event_to_its_last(
    system: RunningSystem,
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("trace", "100.00")
    sku = await ledger.sku("trace", 10)
    order = await ledger.place(customer, [(sku, 1, "3.00")])
    assert (await wait_terminal(system.client, order["order_id"]))["status"] == "COMPLETED"

    records = await saga_records(system, order["order_id"])

    first, last = trace_of(records["order-created"]), trace_of(records["order-completed"])
    assert first.trace_id == last.trace_id
    contexts = [trace_of(records[topic]) for topic in COMPLETED_SAGA]
    assert {context.trace_id for context in contexts} == {first.trace_id}
    assert len({context.span_id for context in contexts}) == len(COMPLETED_SAGA)  # one per hop


async def test_an_order_placed_with_a_traceparent_continues_the_callers_trace(
    system: RunningSystem,
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("caller-trace", "100.00")
    sku = await ledger.sku("caller-trace", 10)
    caller = TraceParent.new_trace()
    body = {"customer_id": customer, "items": [{"sku": sku, "quantity": 1, "unit_price": "1.00"}]}
    response = await system.client.http.post(
        f"{system.client.urls.order}/orders", json=body, headers={"traceparent": str(caller)}
    )
    response.raise_for_status()
    order_id = response.json()["order_id"]
    assert (await wait_terminal(system.client, order_id))["status"] == "COMPLETED"

    records = await saga_records(system, order_id)

    assert {trace_of(r).trace_id for r in records.values()} == {caller.trace_id}
    assert trace_of(records["order-created"]).span_id != caller.span_id


def json_lines(system: RunningSystem, instance: ServiceInstance) -> list[dict[str, Any]]:
    """Every line of the instance's log, each of which must be a JSON object."""
    lines = []
    for number, line in enumerate(system.log(instance.name).splitlines(), 1):
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError as error:
            raise AssertionError(
                f"{instance.name}.log line {number} is not JSON: {line!r}"
            ) from error
        assert isinstance(parsed, dict), line
        assert {"time", "level", "logger", "message", "service", "instance"} <= parsed.keys(), line
        lines.append(parsed)
    return lines


async def test_log_lines_are_json_objects_and_those_about_an_event_name_it(
    system: RunningSystem,
) -> None:
    ledger = Ledger(system.client)
    customer = await ledger.customer("logs", "100.00")
    sku = await ledger.sku("logs", 10)
    payments = instances(system.state_dir, "payment")
    for each in payments:  # whichever owns the order's partition retries it once
        await system.client.add_fault(each.url, "transient", count=1)
    order = await ledger.place(customer, [(sku, 1, "1.00")])
    order_id = order["order_id"]
    assert (await wait_terminal(system.client, order_id))["status"] == "COMPLETED"

    lines = {each.name: json_lines(system, each) for each in instances(system.state_dir)}

    retried = [
        line
        for each in payments
        for line in lines[each.name]
        if line["message"].startswith("retrying") and line.get("order_id") == order_id
    ]
    assert retried, "no retry line about the order"
    line = retried[0]
    assert set(EVENT_IDS) <= line.keys()
    assert line["level"] == "WARNING" and line["service"] == "payment"
    assert line["event_type"] == "OrderCreated" and line["correlation_id"] == order_id
    assert line["topic"] == system.topic("order-created")
    assert uuid.UUID(line["event_id"])
    assert isinstance(line["partition"], int) and isinstance(line["offset"], int)
    assert len(line["trace_id"]) == 32
    (order_instance,) = instances(system.state_dir, "order")
    access = [
        line
        for line in lines[order_instance.name]
        if line["logger"] == "sagakit.access" and line.get("http_route") == "/orders"
    ]
    assert any(a["http_method"] == "POST" and a["http_status"] == 202 for a in access), access[-3:]
