"""Trace context through the outbox and Kafka, with and without OpenTelemetry recording.

A handler's events carry the trace of the event that caused them (batched handler, several
orders in one transaction, each in its own trace); the relay publishes them with it; with
OpenTelemetry on, the consumer and producer spans are real and chained parent to child.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated, PaymentFailed
from shared.consuming.consumer import Subscription
from shared.contracts.topics import Topics, encode
from shared.observability.tracing import TraceParent, header_of, use_opentelemetry
from shared.publishing.outbox import OutboxRelay
from shared.storage.db import UnitOfWork, outbox_table
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import (
    Kafka,
    new_order,
    prepare_database,
    read_all,
    running,
    settings_for,
    wait_until,
)

ORDERS = 3


@pytest.fixture
def recorded() -> Iterator[InMemorySpanExporter]:
    """OpenTelemetry on for one test, its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_opentelemetry(provider)
    try:
        yield exporter
    finally:
        use_opentelemetry(None)


@pytest.fixture
async def kafka(infra: Infrastructure) -> AsyncIterator[Kafka]:
    async with Kafka.connect(
        infra.kafka_bootstrap, Topics(CATALOGUE, infra.topic_prefix("t"))
    ) as kafka:
        yield kafka


async def refuse_all(events: Sequence[OrderCreated], uow: UnitOfWork) -> None:
    for event in events:
        uow.emit(
            PaymentFailed.caused_by(
                event, producer="payment", customer_id="c", amount=event.total, reason="test"
            )
        )


async def run_the_hop(
    infra: Infrastructure, kafka: Kafka
) -> tuple[dict[str, TraceParent], dict[str, TraceParent], dict[str, TraceParent]]:
    """Orders in, each with a trace of its own; their refusals out through the outbox.

    Returns, by order id: the trace each order came with, the outbox row's, the published
    record's.
    """
    url = await infra.create_database("tracing")
    engine = await prepare_database(url)
    incoming = {f"o-trace-{n}": TraceParent.new_trace() for n in range(ORDERS)}
    for order_id, context in incoming.items():
        record = encode(new_order(order_id), kafka.topics, str(context))
        await kafka.publish_raw(record.topic, record.key, record.value, record.headers)
    relay = OutboxRelay(url, kafka.producer, poll_interval_s=0.2)
    try:
        async with running(
            settings_for(kafka.bootstrap, kafka.topics),
            engine,
            [Subscription.batched(OrderCreated, refuse_all)],
            group=infra.unique("g"),
            topics=kafka.topics,
        ):
            await wait_until(lambda: _rows(engine, ORDERS), what="the refusals in the outbox")
        stored = await _stored(engine)
        await relay.start()
        published = await read_all(kafka.bootstrap, kafka.topics.for_event(PaymentFailed), ORDERS)
    finally:
        await relay.stop()
        await engine.dispose()
    sent: dict[str, TraceParent] = {}
    for record in published:
        carried = header_of(record.headers)
        assert carried is not None, record.headers
        sent[(record.key or b"").decode()] = carried
    return incoming, stored, sent


async def _rows(engine: AsyncEngine, expected: int) -> bool:
    return len(await _stored(engine)) == expected


async def _stored(engine: AsyncEngine) -> dict[str, TraceParent]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(outbox_table))).all()
    stored = {}
    for row in rows:
        context = TraceParent.parse(row.traceparent)
        assert context is not None and "traceparent" not in dict(row.headers)
        stored[row.key.decode()] = context
    return stored


async def test_without_opentelemetry_the_header_carries_the_trace_from_cause_to_effect(
    infra: Infrastructure, kafka: Kafka
) -> None:
    incoming, stored, sent = await run_the_hop(infra, kafka)

    assert {o: c.trace_id for o, c in stored.items()} == {
        o: c.trace_id for o, c in incoming.items()
    }
    for order_id, context in stored.items():
        assert context.span_id != incoming[order_id].span_id  # the consumer's span, a new one
        assert sent[order_id] == context  # the relay forwards it as it is


async def test_with_opentelemetry_consumer_and_producer_spans_chain_the_hops(
    infra: Infrastructure, kafka: Kafka, recorded: InMemorySpanExporter
) -> None:
    incoming, stored, sent = await run_the_hop(infra, kafka)
    expected = {c.span_id for c in (*stored.values(), *sent.values())}

    async def every_span_ended() -> bool:
        # The last acknowledgement's callback ends its publish span, after the send returns.
        ended = {f"{s.context.span_id:016x}" for s in recorded.get_finished_spans()}
        return expected <= ended

    await wait_until(every_span_ended, what="the consumer's and the relay's spans ended")
    spans = recorded.get_finished_spans()

    def by_span_id(context: TraceParent) -> ReadableSpan:
        (span,) = [s for s in spans if f"{s.context.span_id:016x}" == context.span_id]
        return span

    for order_id, came in incoming.items():
        consumed = by_span_id(stored[order_id])
        assert consumed.name.endswith("order-created process")
        assert consumed.parent is not None and f"{consumed.parent.span_id:016x}" == came.span_id
        assert f"{consumed.context.trace_id:032x}" == came.trace_id
        produced = by_span_id(sent[order_id])
        assert produced.name.endswith("payment-failed publish")
        assert produced.parent is not None
        assert produced.parent.span_id == consumed.context.span_id
        assert sent[order_id].trace_id == came.trace_id
