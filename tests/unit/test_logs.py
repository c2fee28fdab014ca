"""Log lines: JSON objects (or console text) carrying the service and the record in hand."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import pytest

from services.events import OrderCreated
from shared.observability.logs import LogFormat, about_record, log_handler

IDS = ("event_type", "event_id", "order_id", "correlation_id", "topic", "partition", "offset")


@dataclass(frozen=True)
class FakeRecord:
    topic: str = "order-created"
    partition: int = 4
    offset: int = 17


def event() -> OrderCreated:
    return OrderCreated.first(
        order_id="o-logs",
        producer="order",
        customer_id="c",
        items=[{"sku": "s", "quantity": 1, "unit_price": "1.00"}],
        total="1.00",
    )


def writing(name: str, log_format: LogFormat) -> tuple[logging.Logger, io.StringIO]:
    """A logger of its own whose lines go, formatted as a service's, to a string."""
    stream = io.StringIO()
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [log_handler("payment", "p-1", log_format, stream)]
    return logger, stream


def test_a_json_line_about_a_record_carries_every_id() -> None:
    logger, stream = writing("sagakit.test.logs", "json")
    handled = event()
    with about_record(FakeRecord(), handled, "4bf92f3577b34da6a3ce929d0e0e4736"):
        logger.warning("retrying %s", handled.event_type)
    logger.info("outside")

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "retrying OrderCreated"
    assert first["level"] == "WARNING" and first["logger"] == "sagakit.test.logs"
    assert (first["service"], first["instance"]) == ("payment", "p-1")
    assert {key: first[key] for key in IDS} == {
        "event_type": "OrderCreated",
        "event_id": str(handled.event_id),
        "order_id": "o-logs",
        "correlation_id": "o-logs",
        "topic": "order-created",
        "partition": 4,
        "offset": 17,
    }
    assert first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first["time"].endswith("+00:00")
    assert second["message"] == "outside" and not set(IDS) & second.keys()


def test_an_exception_is_part_of_its_json_line() -> None:
    logger, stream = writing("sagakit.test.logs.exc", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exc_info"]


def test_a_console_line_appends_the_records_ids() -> None:
    logger, stream = writing("sagakit.test.logs.console", "console")
    with about_record(FakeRecord()):
        logger.error("dead-lettering")
    (line,) = stream.getvalue().splitlines()
    assert "ERROR payment[p-1] sagakit.test.logs.console: dead-lettering" in line
    assert line.endswith("[topic=order-created partition=4 offset=17]")


def test_an_unknown_log_format_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="json or console"):
        log_handler("order", "o-1", "xml")  # type: ignore[arg-type]
