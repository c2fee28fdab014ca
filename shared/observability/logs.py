"""Logs: one line per message, JSON or console, with the event in hand on every line.

``configure_logging`` sends every logger's lines to stderr, each with the service and the
instance that wrote it. While a record is being processed (``about_record``), every line
also carries that record's ids: ``event_type``, ``event_id``, the event's key under the name
its type declares (``Event.key_field``), ``correlation_id``, ``topic``, ``partition``,
``offset`` (and ``trace_id``). They live in one
context variable, so binding them costs one ``ContextVar.set`` per record, and a line logged
by any module (the inbox, the DLQ, a service's handler) picks them up without being passed
anything.

A run of records handled in one transaction (``shared.consuming.pipeline``) binds no record: what is
logged there is about the run, and a record that fails is then taken on its own, bound.

``json`` (``SAGAKIT_LOG_FORMAT=json``) writes one JSON object per line, for a log pipeline;
``console`` writes the plain text a person reads, the context appended as ``key=value``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from shared.contracts.events import Event

__all__ = [
    "LogFormat",
    "about_record",
    "configure_logging",
    "current_context",
    "log_handler",
    "record_fields",
]

LogFormat = Literal["json", "console"]

_context: ContextVar[Mapping[str, object] | None] = ContextVar("sagakit_log_context", default=None)


class ConsumedRecord(Protocol):
    """What the log context needs of a consumed record (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def record_fields(
    record: ConsumedRecord, event: Event | None = None, trace_id: str | None = None
) -> dict[str, object]:
    """The log fields of ``record`` and, once decoded, of its ``event``, in the order the
    console format shows them."""
    fields: dict[str, object] = {}
    if event is not None:
        fields |= {
            "event_type": event.event_type,
            "event_id": str(event.event_id),
            event.key_field: event.entity_key,
            "correlation_id": event.correlation_id,
        }
    fields |= {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields


@contextlib.contextmanager
def about_record(
    record: ConsumedRecord, event: Event | None = None, trace_id: str | None = None
) -> Iterator[None]:
    """Every line logged inside the block carries ``record``'s (and ``event``'s) ids."""
    token = _context.set(record_fields(record, event, trace_id))
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> Mapping[str, object]:
    """The fields ``about_record`` bound here (empty outside one)."""
    return _context.get() or {}


class _AddContext(logging.Filter):
    """Puts the service's fields and the bound record's on every line the handler writes."""

    def __init__(self, static: Mapping[str, object]) -> None:
        super().__init__()
        self._static = dict(static)

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self._static.items():
            record.__dict__.setdefault(key, value)
        for key, value in current_context().items():
            record.__dict__.setdefault(key, value)  # an explicit ``extra`` wins
        return True


class _ConsoleFormatter(logging.Formatter):
    def __init__(self, service: str, instance_id: str) -> None:
        super().__init__(
            f"%(asctime)s %(levelname)s {service}[{instance_id}] %(name)s: %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        # The bound record's fields, in their order: formatted where they were logged.
        context = " ".join(
            f"{key}={record.__dict__[key]}" for key in current_context() if key in record.__dict__
        )
        return f"{line} [{context}]" if context else line


def _json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601, UTC
    )


def log_handler(
    service: str, instance_id: str, log_format: LogFormat = "console", stream: Any = None
) -> logging.Handler:
    """A handler writing lines in ``log_format`` to ``stream`` (stderr), context included."""
    if log_format not in ("json", "console"):
        raise ValueError(f"log format must be json or console, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        _json_formatter() if log_format == "json" else _ConsoleFormatter(service, instance_id)
    )
    handler.addFilter(_AddContext({"service": service, "instance": instance_id}))
    return handler


def configure_logging(
    service: str, instance_id: str, level: str = "INFO", log_format: LogFormat = "console"
) -> None:
    """Every logger's lines to stderr in ``log_format``, at ``level`` and above."""
    root = logging.getLogger()
    root.handlers[:] = [log_handler(service, instance_id, log_format)]
    root.setLevel(level.upper())
    # Warnings (deprecations) would go straight to stderr, as lines that are not JSON.
    logging.captureWarnings(True)
    # aiokafka logs every coordinator hiccup at ERROR/WARNING during normal rebalances.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
