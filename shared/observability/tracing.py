"""W3C trace context through Kafka: one trace id follows an order through its whole saga.

The ``traceparent`` header (``00-<trace id>-<span id>-<flags>``, W3C Trace Context) rides on
every record. An HTTP request starts a span (or continues the caller's ``traceparent``); an
event emitted while handling it carries that span. A consumer handling a record starts a
span whose parent is the record's header: the same trace id, a new span id. The events a
handler emits in reaction (``Event.caused_by``) carry the span of the event that caused
them, looked up by ``causation_id``, so this works for a batched handler too, whose
transaction holds the events of many orders, each in its own trace. An event emitted
outside any span starts a trace of its own.

Without OpenTelemetry the spans are just ids: the header is generated and carried, and
nothing is recorded. With the ``otel`` extra installed and ``SAGAKIT_OTEL_ENABLED=true``,
``configure_tracing`` makes every span a real OpenTelemetry span, exported by OTLP
(``OTEL_EXPORTER_OTLP_ENDPOINT``, the exporter's own variables) or to the console.
"""

from __future__ import annotations

import contextlib
import random
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from shared.contracts.events import Event

__all__ = [
    "TRACEPARENT",
    "OpenSpan",
    "SpanKind",
    "TraceParent",
    "active_span",
    "configure_tracing",
    "handling",
    "header_of",
    "recording",
    "start_span",
    "traceparent_for",
    "use_opentelemetry",
]

TRACEPARENT = "traceparent"
"""The record header (and HTTP header) that carries the trace context."""

SpanKind = Literal["server", "consumer", "producer", "internal"]

_HEADER = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A span's place in a trace, as the ``traceparent`` header writes it."""

    trace_id: str
    span_id: str
    flags: str = "01"  # sampled

    @classmethod
    def parse(cls, header: str | bytes | None) -> TraceParent | None:
        """The context ``header`` carries; None when absent or not a valid version-00 header."""
        if header is None:
            return None
        text = header.decode("ascii", "replace") if isinstance(header, bytes) else header
        match = _HEADER.match(text.strip())
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, flags)

    @classmethod
    def new_trace(cls) -> TraceParent:
        """The first span of a new trace."""
        return cls(_random_hex(128), _random_hex(64))

    def child(self) -> TraceParent:
        """A new span of the same trace."""
        return TraceParent(self.trace_id, _random_hex(64), self.flags)

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def _random_hex(bits: int) -> str:
    # W3C asks for random ids, not secret ones; never all zeros (an invalid id).
    value = random.getrandbits(bits) or 1
    return f"{value:0{bits // 4}x}"


def header_of(headers: Sequence[tuple[str, bytes]]) -> TraceParent | None:
    """The trace context in a record's headers, if it carries a valid one."""
    for name, value in headers:
        if name == TRACEPARENT:
            return TraceParent.parse(value)
    return None


class OpenSpan(Protocol):
    """A span that has started; ``end`` it once."""

    @property
    def context(self) -> TraceParent: ...

    def end(self, error: BaseException | None = None) -> None: ...


class _Tracer(Protocol):
    def start(
        self,
        name: str,
        parent: TraceParent | None,
        kind: SpanKind,
        attributes: Mapping[str, str | int],
    ) -> OpenSpan: ...


@dataclass(frozen=True, slots=True)
class _IdsOnly:
    """A span that is only its ids: nothing is recorded."""

    context: TraceParent

    def end(self, error: BaseException | None = None) -> None:
        pass


class _PlainTracer:
    def start(
        self,
        name: str,
        parent: TraceParent | None,
        kind: SpanKind,
        attributes: Mapping[str, str | int],
    ) -> OpenSpan:
        return _IdsOnly(parent.child() if parent is not None else TraceParent.new_trace())


_tracer: _Tracer = _PlainTracer()
_active: ContextVar[TraceParent | None] = ContextVar("sagakit_active_span", default=None)
_causes: ContextVar[Mapping[uuid.UUID, TraceParent] | None] = ContextVar(
    "sagakit_span_by_cause", default=None
)


def start_span(
    name: str,
    parent: TraceParent | None,
    kind: SpanKind = "internal",
    attributes: Mapping[str, str | int] | None = None,
) -> OpenSpan:
    """Start a span, a child of ``parent`` (None: the first span of a new trace)."""
    return _tracer.start(name, parent, kind, attributes or {})


@contextlib.contextmanager
def active_span(span: OpenSpan) -> Iterator[TraceParent]:
    """Within the block, events emitted with no cause of their own belong to ``span``."""
    token = _active.set(span.context)
    try:
        yield span.context
    finally:
        _active.reset(token)


@contextlib.contextmanager
def handling(spans: Mapping[uuid.UUID, TraceParent]) -> Iterator[None]:
    """Within the block, an event caused by one of ``spans``' event ids belongs to its span."""
    token = _causes.set(spans)
    try:
        yield
    finally:
        _causes.reset(token)


def traceparent_for(event: Event) -> str:
    """The ``traceparent`` an emitted ``event`` carries (module docstring)."""
    causes = _causes.get()
    if causes is not None and event.causation_id is not None:
        cause = causes.get(event.causation_id)
        if cause is not None:
            return str(cause)
    active = _active.get()
    if active is not None:
        return str(active)
    return str(TraceParent.new_trace())


# OpenTelemetry, when asked for: imported only then, so the package is an optional extra.


class _OtelSpan:
    def __init__(self, span: Any) -> None:
        self._span = span
        context = span.get_span_context()
        self.context = TraceParent(
            f"{context.trace_id:032x}", f"{context.span_id:016x}", f"{context.trace_flags:02x}"
        )

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self._span.end()


class _OtelTracer:
    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace

        self._tracer = provider.get_tracer("sagakit")
        self._kinds = {
            "server": trace.SpanKind.SERVER,
            "consumer": trace.SpanKind.CONSUMER,
            "producer": trace.SpanKind.PRODUCER,
            "internal": trace.SpanKind.INTERNAL,
        }

    def start(
        self,
        name: str,
        parent: TraceParent | None,
        kind: SpanKind,
        attributes: Mapping[str, str | int],
    ) -> OpenSpan:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        context = None
        if parent is not None:
            context = TraceContextTextMapPropagator().extract({TRACEPARENT: str(parent)})
        span = self._tracer.start_span(
            name, context=context, kind=self._kinds[kind], attributes=dict(attributes)
        )
        return _OtelSpan(span)


def recording() -> bool:
    """Whether spans are recorded (OpenTelemetry), not just ids."""
    return isinstance(_tracer, _OtelTracer)


def use_opentelemetry(provider: Any | None) -> None:
    """Record spans with ``provider`` (an OpenTelemetry ``TracerProvider``); None: ids only."""
    global _tracer
    _tracer = _PlainTracer() if provider is None else _OtelTracer(provider)


def configure_tracing(
    *,
    enabled: bool,
    service: str,
    instance_id: str,
    exporter: Literal["otlp", "console", "none"] = "otlp",
) -> None:
    """Real OpenTelemetry spans if ``enabled`` (needs the ``otel`` extra); ids only otherwise."""
    if not enabled:
        use_opentelemetry(None)
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as error:
        raise RuntimeError(
            "SAGAKIT_OTEL_ENABLED is true but OpenTelemetry is not installed: "
            "pip install 'sagakit[otel]' (or set SAGAKIT_OTEL_ENABLED=false)"
        ) from error
    resource = Resource.create({"service.name": service, "service.instance.id": instance_id})
    provider = TracerProvider(resource=resource)
    if exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise RuntimeError(
                "SAGAKIT_OTEL_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'sagakit[otel]'"
            ) from error
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    use_opentelemetry(provider)
