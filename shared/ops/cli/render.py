"""One Kafka record for a person (a block of lines) or for a script (a JSON object).

A value that is a JSON object with an ``event_type`` is an event of the catalogue: shown as
indented JSON. Other JSON is shown on one line, other UTF-8 as text, anything else as
base64 (``value_encoding`` says which in JSON output).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from shared.ops.cli.output import iso_ms, say
from shared.publishing.dlq import ReceivedRecord

__all__ = ["header_map", "print_record", "record_json"]


def header_map(record: ReceivedRecord) -> dict[str, str]:
    """The headers as text (the last one wins when a name repeats)."""
    return {name: value.decode(errors="replace") for name, value in record.headers}


def decoded_value(raw: bytes | None) -> tuple[str, Any]:
    """``(encoding, value)``: ``event``, ``json``, ``text``, ``base64`` or ``null``."""
    if raw is None:
        return "null", None
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode()
    try:
        value = json.loads(text)
    except ValueError:
        return "text", text
    return ("event" if isinstance(value, dict) and "event_type" in value else "json"), value


def record_json(record: Any) -> dict[str, Any]:
    """A consumed record as a JSON-ready dict."""
    encoding, value = decoded_value(record.value)
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": iso_ms(record.timestamp),
        "key": record.key.decode(errors="replace") if record.key is not None else None,
        "headers": header_map(record),
        "value_encoding": "json" if encoding == "event" else encoding,
        "value": value,
    }


def print_record(record: Any) -> None:
    """The record as a few lines: where, when, key, headers, then its value."""
    shown = record_json(record)
    say(
        f"{shown['topic']}[{shown['partition']}]@{shown['offset']}  {shown['timestamp']}  "
        f"key={shown['key']}"
    )
    for name, value in shown["headers"].items():
        say(f"  {name}: {value}")
    encoding, value = decoded_value(record.value)
    if encoding == "event":
        say("  " + json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n  "))
    elif encoding == "json":
        say("  " + json.dumps(value, ensure_ascii=False))
    else:
        say(f"  ({encoding}) {value}")
