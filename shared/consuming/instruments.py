"""What the consume pipeline reports, wrapped around its steps rather than written into them:
the handlers' durations, the stages of each record's hop, and a span per record.

``Instruments`` is handed to the pipeline once per consumer group; the pipeline marks where it
is (``reached``), times its handlers (``timing``) and opens its spans (``traced``), and
nothing else of it knows that metrics or traces exist.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from aiokafka.structs import ConsumerRecord
from prometheus_client import Histogram

from shared.consuming.subscriptions import Route
from shared.contracts.events import Event
from shared.observability.metrics import histogram
from shared.observability.stages import StageClock
from shared.observability.tracing import (
    OpenSpan,
    TraceParent,
    handling,
    header_of,
    recording,
    start_span,
)

__all__ = [
    "Instruments",
    "Item",
    "consumer_span",
    "consumer_stages",
    "handler_durations",
]


class Item(Protocol):
    """A record and the event decoded from it."""

    @property
    def record(self) -> ConsumerRecord[bytes, bytes]: ...

    @property
    def event(self) -> Event: ...


def handler_durations() -> Histogram:
    """The handler duration histogram of a consumer group."""
    return histogram(
        "sagakit_handler_duration_seconds",
        "Time the handlers of one event type took in one transaction (one or more events)",
        ("group", "event_type"),
    )


def consumer_stages() -> StageClock:
    """When a consumer group's records reached each stage of their hop, from the moment
    their outbox rows were written (``shared.observability.stages``)."""
    return StageClock(
        "sagakit_consumer_stage_seconds",
        "Time from writing an outbox row (its record's Kafka timestamp) to a stage of the "
        "group that consumes it: fetched, begun (its transaction), locked (the group's lock "
        "taken and its events claimed in the inbox, one statement), committed, offset_committed",
        ("topic", "group", "stage"),
    )


def consumer_span(record: ConsumerRecord[bytes, bytes], group: str) -> OpenSpan:
    """The span of handling ``record``: a child of the span its ``traceparent`` names."""
    parent = header_of(record.headers)
    if not recording():  # ids only: no name or attributes to build for every record
        return start_span("", parent, "consumer")
    return start_span(
        f"{record.topic} process",
        parent,
        "consumer",
        {
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": group,
        },
    )


class Instruments:
    """One consumer group's metrics and spans, as the pipeline uses them."""

    def __init__(
        self, group: str, durations: Histogram | None = None, stages: StageClock | None = None
    ) -> None:
        self._group = group
        self._durations = durations or handler_durations()
        self._stages = stages

    def reached(self, stage: str, runs: Sequence[Sequence[Item]]) -> None:
        """The records of ``runs`` reached ``stage`` of their hop now (one clock reading)."""
        if self._stages is None:
            return
        now = time.time()
        for run in runs:  # a run is one partition's, so one topic's
            if run:
                topic = run[0].record.topic
                self._stages.observe(
                    (topic, self._group, stage), now, [item.record.timestamp for item in run]
                )

    @contextlib.contextmanager
    def timing(self, route: Route) -> Iterator[None]:
        """Time the handlers of ``route`` for the block."""
        started = time.perf_counter()
        yield
        self._durations.labels(self._group, route.event_type.type_name()).observe(
            time.perf_counter() - started
        )

    def span(self, record: ConsumerRecord[bytes, bytes]) -> OpenSpan:
        return consumer_span(record, self._group)

    @contextlib.contextmanager
    def traced(
        self, items: Sequence[Item], open_spans: Mapping[uuid.UUID, OpenSpan]
    ) -> Iterator[None]:
        """A span for each item (the one in ``open_spans`` if its caller opened it), ended
        with the block's outcome; the events handlers emit meanwhile carry their cause's."""
        opened = {
            item.event.event_id: self.span(item.record)
            for item in items
            if item.event.event_id not in open_spans
        }
        contexts: dict[uuid.UUID, TraceParent] = {
            event_id: span.context for event_id, span in {**open_spans, **opened}.items()
        }
        failure: BaseException | None = None
        try:
            with handling(contexts):
                yield
        except BaseException as error:
            failure = error
            raise
        finally:
            for span in opened.values():
                span.end(failure)
