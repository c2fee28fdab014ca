"""The AsyncAPI 3 document of the event contracts, generated from the code that makes them.

``python -m services.asyncapi`` writes ``docs/asyncapi.yaml``; ``--check`` writes nothing and
fails when the file is not what the code generates (the test suite runs that check). What
the document says comes from the code, so it cannot drift from it:

- channels: one per topic of the catalogue it is handed (``shared.contracts.catalogue``) and
  one per dead-letter topic;
- messages: each event model's JSON Schema (pydantic), its headers (``event_headers``; the
  dead letters' from ``dead_letter_headers``), and its key, the id its type declares (a Kafka
  binding);
- operations: what each service sends and each of its consumer groups receives
  (``ServiceWiring``), which the caller reads from the services' code: for the reference
  system, ``services/asyncapi.py`` (the platform knows no service);
- the title, the introduction and the words for the key: the system's ``DocumentText``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from shared.app.service import ASYNCAPI_DOCUMENT
from shared.contracts.catalogue import Catalogue
from shared.contracts.errors import NotAnEvent
from shared.contracts.events import Event, event_headers
from shared.contracts.topics import Topics
from shared.contracts.upcasting import FIRST_VERSION
from shared.publishing.dlq import dead_letter_headers

__all__ = [
    "DOCUMENT",
    "DocumentText",
    "ServiceWiring",
    "build_document",
    "main",
    "render",
]

DOCUMENT = ASYNCAPI_DOCUMENT
"""docs/asyncapi.yaml, which every service serves (``shared.app.service``)."""

KAFKA_BINDING_VERSION = "0.5.0"
SCHEMAS = "#/components/schemas/"

EVENT_HEADERS = {
    "event_type": "The event's type, as in the value: readable without parsing it.",
    "event_id": "The event's id, as in the value.",
    "traceparent": "W3C trace context of the trace that produced it, when one was active.",
}
DLQ_HEADERS = {
    "dlq.original.topic": "The topic the record was read from.",
    "dlq.original.partition": "Its partition there (decimal).",
    "dlq.original.offset": "Its offset there (decimal).",
    "dlq.consumer.group": "The consumer group that gave up on it.",
    "dlq.error.type": "The error's class: NotAnEvent when the bytes are not an event of the "
    "topic (a schema_version newer than the consumer knows included).",
    "dlq.error.message": "Why, in words.",
    "dlq.attempts": "How many times it was tried (decimal).",
    "dlq.failed_at": "When it was given up on (RFC 3339, UTC).",
}

HEADER_FORMATS = {"event_id": {"format": "uuid"}, "dlq.failed_at": {"format": "date-time"}}


@dataclass(frozen=True)
class DocumentText:
    """What a system says of itself in its document, in its own words."""

    title: str
    about: str
    """The document's introduction (Markdown)."""
    key: str
    """What the records' key is, lower case (for instance "the customer id")."""


@dataclass(frozen=True)
class ServiceWiring:
    """What one service sends, and what each of its consumer groups receives."""

    name: str
    sends: tuple[type[Event], ...]
    groups: Mapping[str, tuple[type[Event], ...]]


def build_document(
    catalogue: Catalogue[Any], services: Sequence[ServiceWiring], text: DocumentText
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``catalogue`` and of ``services``' operations."""
    topics = Topics(catalogue)
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for cls in catalogue:
        name, topic = cls.type_name(), topics.for_event(cls)
        schemas[name] = _payload_schema(cls, schemas)
        messages[name] = _event_message(cls, text.key)
        messages[_dead_letter(name)] = _dead_letter_message(cls, text.key)
        channels[topic] = _channel(topic, name, _channel_summary(cls, services))
        channels[Topics.dlq(topic)] = _channel(
            Topics.dlq(topic), _dead_letter(name), f"{name} records no consumer group could take."
        )
    schemas |= _header_schemas(catalogue[0])
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": text.title,
            "version": importlib.metadata.version("sagakit"),
            "description": text.about,
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The broker `make up` starts (SAGAKIT_KAFKA_BOOTSTRAP).",
            }
        },
        "channels": channels,
        "operations": _operations(topics, services),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": messages,
            "parameters": {
                "prefix": {
                    "description": "SAGAKIT_TOPIC_PREFIX: lets systems share a cluster.",
                    "default": "",
                    "examples": ["", "staging-"],
                }
            },
        },
    }


def _dead_letter(event_type: str) -> str:
    return f"{event_type}DeadLetter"


def _channel(topic: str, message: str, description: str) -> dict[str, Any]:
    return {
        "address": f"{{prefix}}{topic}",
        "description": description,
        "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
    }


def _channel_summary(cls: type[Event], services: Sequence[ServiceWiring]) -> str:
    senders = [s.name for s in services if cls in s.sends]
    readers = [
        f"{s.name} (group {group})"
        for s in services
        for group, types in s.groups.items()
        if cls in types
    ]
    return (
        f"{cls.type_name()} events. Sent by {', '.join(senders) or 'nobody'}; "
        f"read by {', '.join(readers) or 'nobody yet'}."
    )


def _payload_schema(cls: type[Event], schemas: dict[str, Any]) -> dict[str, Any]:
    """``cls``'s JSON Schema as written, its nested models moved to ``schemas``."""
    schema = cls.model_json_schema(mode="serialization", ref_template=SCHEMAS + "{model}")
    for name, nested in schema.pop("$defs", {}).items():
        if schemas.setdefault(name, nested) != nested:
            raise ValueError(f"two different models are both named {name}")
    # Producers write every field, None included: what a reader finds is all of them.
    schema["required"] = list(schema["properties"])
    current = cls.current_version()
    schema["properties"]["schema_version"]["description"] = (
        f"Written as {current}; read from {FIRST_VERSION} to {current}"
        + (" (older versions are upcast)." if current > FIRST_VERSION else ".")
    )
    schema.setdefault("description", f"The {cls.type_name()} event: the envelope and its fields.")
    return schema


def _event_message(cls: type[Event], key: str) -> dict[str, Any]:
    name, current = cls.type_name(), cls.current_version()
    return {
        "name": name,
        "title": f"{name} (schema_version {current})",
        "headers": {"$ref": SCHEMAS + "EventHeaders"},
        "payload": {"$ref": SCHEMAS + name},
        "correlationId": {
            "description": "The saga the event belongs to.",
            "location": "$message.payload#/correlation_id",
        },
        "bindings": {"kafka": _key_binding(f"{key[:1].upper()}{key[1:]} (UTF-8).")},
    }


def _dead_letter_message(cls: type[Event], key: str) -> dict[str, Any]:
    name = cls.type_name()
    return {
        "name": _dead_letter(name),
        "title": f"{name} dead letter",
        "summary": f"A record of the {name} topic that a consumer group gave up on.",
        "headers": {"$ref": SCHEMAS + "DeadLetterHeaders"},
        "payload": {
            "description": f"The original value, byte for byte: usually the {name} that could "
            "not be handled, but bytes that were not one are kept as they came."
        },
        "bindings": {"kafka": _key_binding(f"The original record's key ({key}).")},
    }


def _key_binding(description: str) -> dict[str, Any]:
    return {
        "key": {"type": "string", "minLength": 1, "description": description},
        "bindingVersion": KAFKA_BINDING_VERSION,
    }


def _header_schemas(sample: type[Event]) -> dict[str, Any]:
    """The headers of an event, and those of a dead letter (the original's, then ``dlq.*``)."""
    event, dead_letter = _event_header_names(sample), _dead_letter_header_names()
    return {
        "EventHeaders": _headers(
            event, required=[n for n in event if n != "traceparent"], about="Every event's."
        ),
        "DeadLetterHeaders": _headers(
            [*event, *dead_letter],
            required=dead_letter,
            about="The original record's headers (usually an event's), then the dlq.* ones.",
        ),
    }


def _headers(names: Iterable[str], *, required: list[str], about: str) -> dict[str, Any]:
    described = EVENT_HEADERS | DLQ_HEADERS
    properties = {
        name: {"type": "string", "description": described[name], **HEADER_FORMATS.get(name, {})}
        for name in names
    }
    return {"type": "object", "description": about, "required": required, "properties": properties}


def _event_header_names(sample: type[Event]) -> list[str]:
    """The headers ``event_headers`` writes (with a trace active), each one described here."""
    fields: dict[str, Any] = {"event_type": sample.type_name(), sample.key_field: "k"}
    event = sample.model_construct(correlation_id="k", producer="p", **fields)
    return _described([name for name, _ in event_headers(event, "00-0-0-01")], EVENT_HEADERS)


def _dead_letter_header_names() -> list[str]:
    """The ``dlq.*`` headers ``dead_letter_headers`` adds, each one described here."""

    @dataclass
    class _Record:
        topic: str = "t"
        partition: int = 0
        offset: int = 0
        key: bytes | None = None
        value: bytes | None = None
        headers: tuple[tuple[str, bytes], ...] = ()

    added = dead_letter_headers(
        _Record(), group="g", error=NotAnEvent("x"), attempts=1, failed_at=datetime.now(UTC)
    )
    return _described([name for name, _ in added], DLQ_HEADERS)


def _described(names: list[str], descriptions: Mapping[str, str]) -> list[str]:
    if set(names) != set(descriptions):
        raise ValueError(
            f"the headers the code writes ({', '.join(names)}) are not the ones described in "
            f"shared/app/asyncapi.py ({', '.join(descriptions)}): describe each header there"
        )
    return names


def _operations(topics: Topics, services: Sequence[ServiceWiring]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for service in services:
        for cls in service.sends:
            operations[f"{service.name}.send{cls.type_name()}"] = _operation(
                topics, "send", cls, service.name, f"{service.name} sends {cls.type_name()}."
            )
        for group, types in service.groups.items():
            for cls in types:
                name = cls.type_name()
                receive = _operation(
                    topics,
                    "receive",
                    cls,
                    service.name,
                    f"{service.name} reads {name} (group {group}).",
                )
                receive["bindings"] = {"kafka": _group_binding(group)}
                operations[f"{group}.receive{name}"] = receive
                operations[f"{group}.deadLetter{name}"] = _operation(
                    topics,
                    "send",
                    cls,
                    service.name,
                    f"{service.name} (group {group}) dead-letters the {name} records it "
                    "cannot take.",
                    dead_letter=True,
                )
    return operations


def _operation(
    topics: Topics,
    action: str,
    cls: type[Event],
    service: str,
    summary: str,
    *,
    dead_letter: bool = False,
) -> dict[str, Any]:
    topic = topics.for_event(cls)
    channel = Topics.dlq(topic) if dead_letter else topic
    message = _dead_letter(cls.type_name()) if dead_letter else cls.type_name()
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "tags": [{"name": service}],
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
    }


def _group_binding(group: str) -> dict[str, Any]:
    return {
        "groupId": {
            "type": "string",
            "enum": [group],
            "description": "After the topic prefix, when there is one.",
        },
        "bindingVersion": KAFKA_BINDING_VERSION,
    }


class _Dumper(yaml.SafeDumper):
    """Writes text of several lines as a literal block, as it reads in the code."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None
    )


_Dumper.add_representer(str, _text)


def render(document: Mapping[str, Any]) -> str:
    """``document`` as YAML, in the order it was built (the order a reader meets it)."""
    header = "# Generated by `python -m services.asyncapi` from the code: edit that, not this.\n"
    body = yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def main(
    catalogue: Catalogue[Any],
    services: Sequence[ServiceWiring],
    text: DocumentText,
    argv: Sequence[str] | None = None,
) -> int:
    """Write (or with ``--check``, compare) the document of ``services``; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m services.asyncapi", description="Write docs/asyncapi.yaml from the code."
    )
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--output", type=Path, default=DOCUMENT)
    args = parser.parse_args(argv)
    generated = render(build_document(catalogue, services, text))
    if not args.check:
        args.output.write_text(generated)
        print(f"wrote {args.output}")
        return 0
    current = args.output.read_text() if args.output.exists() else ""
    if current == generated:
        print(f"{args.output} matches the code")
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        generated.splitlines(keepends=True),
        str(args.output),
        "generated from the code",
    )
    sys.stderr.writelines(list(diff)[:60])
    print(f"{args.output} is out of date: run python -m services.asyncapi", file=sys.stderr)
    return 1
