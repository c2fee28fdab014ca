"""The metric families and their rendering: parseable by Prometheus' own parser, exact."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from services.events import CATALOGUE, OrderCreated
from shared.consuming.consumer import ConsumerRunner
from shared.consuming.subscriptions import Subscription
from shared.contracts.topics import Topics
from shared.observability.metrics import counter, gauge, render
from shared.settings import PlatformSettings
from shared.storage.db import UnitOfWork

LABELS = {"service": "payment", "instance": "p-1"}


def parsed(text: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


async def _ignore(event: OrderCreated, uow: UnitOfWork) -> None:
    pass


def runner() -> ConsumerRunner:
    """A runner that is never started: its counters and families, no I/O."""
    return ConsumerRunner(
        group_id="payment",
        subscriptions=[Subscription(OrderCreated, _ignore)],
        settings=PlatformSettings(service_name="payment"),
        units=lambda: None,  # type: ignore[arg-type,return-value]  # never called
        topics=Topics(CATALOGUE),
    )


async def test_a_counter_past_ten_million_renders_every_digit() -> None:
    consumer = runner()
    consumer.stats.count("order-created", "ok", 10_000_001)
    consumer.stats.count("order-created", "duplicate", 123_456_789_012)

    samples = parsed(render(await consumer.metrics(), LABELS))

    events = {ls["outcome"]: value for ls, value in samples["sagakit_consumer_events_total"]}
    assert events["ok"] == 10_000_001
    assert events["duplicate"] == 123_456_789_012
    assert events["retried"] == events["dead_lettered"] == 0


async def test_each_sample_has_service_and_instance_and_two_groups_make_one_family() -> None:
    first, second = runner(), runner()
    second.group_id = "payment-audit"
    first.stats.count("order-created", "ok", 2)
    second.stats.count("order-created", "dead_lettered")

    text = render([*await first.metrics(), *await second.metrics()], LABELS)

    assert text.count(b"# TYPE sagakit_consumer_events_total counter") == 1
    samples = parsed(text)
    for labels, _ in samples["sagakit_consumer_events_total"]:
        assert labels["service"] == "payment" and labels["instance"] == "p-1"
    published = {
        (labels["group"], labels["topic"]): value
        for labels, value in samples["sagakit_dlq_published_total"]
    }
    assert published == {
        ("payment", Topics.dlq("order-created")): 0,
        ("payment-audit", Topics.dlq("order-created")): 1,
    }


def test_a_registry_of_its_own_is_rendered_with_the_families() -> None:
    registry = CollectorRegistry()
    durations = Histogram("sagakit_test_seconds", "test", ["route"], registry=registry)
    durations.labels("/orders").observe(0.02)
    families = [
        counter("sagakit_things", "things", ("kind",), {("a",): 3}),
        gauge("sagakit_level", "level", (), {(): 0.5}),
    ]

    samples = parsed(render(families, LABELS, registry))

    assert samples["sagakit_things_total"] == [({**LABELS, "kind": "a"}, 3)]
    assert samples["sagakit_level"] == [(LABELS, 0.5)]
    assert samples["sagakit_test_seconds_count"] == [({**LABELS, "route": "/orders"}, 1)]
