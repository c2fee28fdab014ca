"""W3C trace context: the header's form, and which span an emitted event belongs to."""

from __future__ import annotations

import uuid

import pytest

from services.events import OrderCreated, PaymentFailed
from shared.observability.tracing import (
    TraceParent,
    active_span,
    configure_tracing,
    handling,
    header_of,
    recording,
    start_span,
    traceparent_for,
)

HEADER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def order() -> OrderCreated:
    return OrderCreated.first(
        order_id="o-1",
        producer="order",
        customer_id="c",
        items=[{"sku": "s", "quantity": 1, "unit_price": "1.00"}],
        total="1.00",
    )


def test_a_traceparent_header_parses_and_prints_back_the_same() -> None:
    parsed = TraceParent.parse(HEADER)
    assert parsed == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert str(parsed) == HEADER
    assert TraceParent.parse(HEADER.encode()) == parsed


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    ],
)
def test_an_invalid_traceparent_is_no_trace_context(header: str | None) -> None:
    assert TraceParent.parse(header) is None


def test_a_child_span_keeps_the_trace_id_and_gets_a_new_span_id() -> None:
    parent = TraceParent.new_trace()
    child = parent.child()
    assert child.trace_id == parent.trace_id and child.span_id != parent.span_id
    assert TraceParent.parse(str(child)) == child
    assert TraceParent.new_trace().trace_id != parent.trace_id


def test_the_header_is_found_among_a_records_headers() -> None:
    assert header_of([("event_type", b"X"), ("traceparent", HEADER.encode())]) == (
        TraceParent.parse(HEADER)
    )
    assert header_of([("event_type", b"X")]) is None


def test_an_event_belongs_to_the_span_of_its_cause_even_among_many() -> None:
    causes = [order() for _ in range(3)]
    spans = {cause.event_id: TraceParent.new_trace() for cause in causes}
    reactions = [
        PaymentFailed.caused_by(cause, producer="payment", customer_id="c", amount="1", reason="r")
        for cause in causes
    ]
    with handling(spans):
        emitted = [traceparent_for(reaction) for reaction in reactions]
    assert emitted == [str(spans[cause.event_id]) for cause in causes]


def test_an_event_without_a_known_cause_belongs_to_the_active_span_or_starts_a_trace() -> None:
    span = start_span("POST /orders", TraceParent.parse(HEADER), "server")
    assert span.context.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    with active_span(span), handling({uuid.uuid4(): TraceParent.new_trace()}):
        assert traceparent_for(order()) == str(span.context)
    alone = TraceParent.parse(traceparent_for(order()))
    assert alone is not None and alone.trace_id != span.context.trace_id


def test_opentelemetry_records_spans_only_when_enabled() -> None:
    configure_tracing(enabled=True, service="order", instance_id="o-1", exporter="none")
    try:
        assert recording()
        span = start_span("POST /orders", TraceParent.parse(HEADER), "server")
        assert span.context.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert span.context.span_id != "00f067aa0ba902b7"
        span.end()
    finally:
        configure_tracing(enabled=False, service="order", instance_id="o-1")
    assert not recording()
