"""The explorer's topic pages: the topics a page at a time, one topic's partitions and
configs, its messages (by partition and offset, by time, or by key), and the brokers.

Everything is read through ``shared.ops.topic_browser``, so every read is bounded: topics
come a page after a name, messages a page from an offset, and a key is looked for among the
newest records of the one partition it hashes to. A Kafka that does not answer is said on
the page; the page itself does not fail.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse

from services.events import decode
from shared.contracts.errors import NotAnEvent
from shared.ops import topic_browser
from shared.ops.topic_browser import MAX_PAGE, Message

__all__ = ["ShownMessage", "register", "shown"]

TOPICS_LISTED: Final = 50
MESSAGES_LISTED: Final = 50
PREVIEW_CHARS: Final = 160
"""A value longer than this is cut to it, with the whole one a click away."""
KAFKA_TIMEOUT_S: Final = 5.0
MAX_TOPIC_CHARS: Final = 249
"""Kafka's own limit on a topic's name."""
MAX_KEY_CHARS: Final = 1024

Render = Callable[..., HTMLResponse]
T = TypeVar("T")


@dataclass(frozen=True)
class ShownMessage:
    """One message as the page shows it: every byte as text, and what its value is."""

    message: Message
    key: str
    headers: list[tuple[str, str]]
    kind: str
    """The event's type, ``text``, ``binary (base64)`` or ``empty``."""
    preview: str
    """The value on one line, cut to ``PREVIEW_CHARS``."""
    whole: str
    """The value in full (an event's JSON indented)."""
    cut: bool
    """Whether the preview leaves anything out: the page then offers the whole."""


def shown(message: Message) -> ShownMessage:
    """``message`` for the page: its value decoded as an event when the catalogue knows it,
    else as text, else base64; its key and headers as text (base64 when binary)."""
    kind, line, whole = _value(message.value)
    preview = line if len(line) <= PREVIEW_CHARS else line[:PREVIEW_CHARS] + "…"
    return ShownMessage(
        message=message,
        key="" if message.key is None else _text(message.key),
        headers=[(name, _text(value)) for name, value in message.headers],
        kind=kind,
        preview=preview,
        whole=whole,
        cut=preview != whole,
    )


def _value(value: bytes | None) -> tuple[str, str, str]:
    """(kind, the value on one line, the value in full)."""
    if not value:
        return "empty", "", ""
    try:
        event = decode(value)
    except NotAnEvent:
        pass
    else:
        return event.event_type, event.model_dump_json(), event.model_dump_json(indent=2)
    try:
        text = value.decode()
    except UnicodeDecodeError:
        encoded = base64.b64encode(value).decode()
        return "binary (base64)", encoded, encoded
    return "text", " ".join(text.split()), text


def human_bytes(size: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; a dash when the size is not known."""
    if size is None:
        return "-"
    amount = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def register(pages: APIRouter, kafka_options: dict[str, Any], prefix: str, render: Render) -> None:
    """Add the topic pages to the explorer's ``pages``: topics named ``prefix``... (the
    system's own), one topic, its messages, and the brokers."""

    @pages.get("/topics", response_class=HTMLResponse)
    async def topics(
        request: Request, after: Annotated[str, Query(max_length=MAX_TOPIC_CHARS)] = ""
    ) -> HTMLResponse:
        """The topics in name order, ``TOPICS_LISTED`` after ``after``."""
        problems: list[str] = []
        found: list[topic_browser.TopicSummary] = []
        counts: dict[str, int] = {}
        try:
            found = await _bounded(
                topic_browser.list_topics(
                    kafka_options, prefix=prefix, after=after, limit=TOPICS_LISTED + 1
                )
            )
        except Exception as error:  # Kafka down: the page says so
            problems.append(_cannot("read the topics", error))
        listed = found[:TOPICS_LISTED]
        sizes: dict[str, int] = {}
        try:
            counts = await _bounded(topic_browser.record_counts(kafka_options, listed))
            sizes = await _bounded(topic_browser.topic_sizes(kafka_options, listed))
        except Exception as error:  # the topics are still listed, their records shown as '-'
            problems.append(_cannot("count the topics' records", error))
        return render(
            request,
            "topics.html",
            topics=listed,
            counts=counts,
            sizes=sizes,
            after=after,
            next_after=listed[-1].name if len(found) > TOPICS_LISTED else None,
            prefix=prefix,
            problems=problems,
        )

    @pages.get("/topics/{topic}", response_class=HTMLResponse)
    async def topic_page(request: Request, topic: str) -> HTMLResponse:
        """One topic: its partitions (leader, replicas, in-sync, offsets) and configs."""
        problems: list[str] = []
        state = None
        try:
            state = await _bounded(topic_browser.describe_topic(kafka_options, topic))
        except Exception as error:
            problems.append(_cannot(f"describe {topic}", error))
        else:
            if state is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no topic {topic!r}")
        return render(request, "topic.html", topic=topic, state=state, problems=problems)

    @pages.get("/topics/{topic}/messages", response_class=HTMLResponse)
    async def topic_messages(
        request: Request,
        topic: str,
        partition: Annotated[int, Query(ge=0)] = 0,
        offset: Annotated[str, Query(max_length=20)] = "",
        at: Annotated[str, Query(max_length=40)] = "",
        key: Annotated[str, Query(max_length=MAX_KEY_CHARS)] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MESSAGES_LISTED,
    ) -> HTMLResponse:
        """A page of one partition's messages: from ``offset``, from the first at or after
        ``at`` (UTC), or the newest; or, with ``key``, the newest with that key."""
        problems: list[str] = []
        start = _offset(offset, problems)
        moment = _moment(at, problems)
        messages: list[Message] = []
        searched: tuple[int, bool] | None = None
        state = None
        try:
            state = await _bounded(topic_browser.describe_topic(kafka_options, topic))
            if state is not None and key:
                found, messages, older = await _bounded(
                    topic_browser.search_key(kafka_options, topic, key.encode(), limit=limit)
                )
                partition, searched = found, (found, older)
            elif state is not None and partition < len(state.partitions):
                messages = await _bounded(
                    topic_browser.read_messages(
                        kafka_options, topic, partition, offset=start, at=moment, limit=limit
                    )
                )
            elif state is not None:
                problems.append(f"{topic} has no partition {partition}")
        except Exception as error:
            problems.append(_cannot(f"read the messages of {topic}", error))
        else:
            if state is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no topic {topic!r}")
        bounds = (
            state.partitions[partition] if state and partition < len(state.partitions) else None
        )
        return render(
            request,
            "messages.html",
            topic=topic,
            state=state,
            partition=partition,
            messages=[shown(message) for message in messages],
            searched=searched,
            scan_limit=topic_browser.DEFAULT_SCAN_LIMIT,
            older=_older(messages, bounds, limit) if not key else None,
            newer=_newer(messages, bounds) if not key else None,
            form={"offset": offset, "at": at, "key": key, "limit": limit},
            problems=problems,
        )

    @pages.get("/brokers", response_class=HTMLResponse)
    async def brokers_page(request: Request) -> HTMLResponse:
        """The brokers: where each listens, the controller, what each leads and holds, and
        how many of its replicas are out of sync."""
        problems: list[str] = []
        found: list[topic_browser.Broker] = []
        try:
            found = await _bounded(topic_browser.brokers(kafka_options))
        except Exception as error:
            problems.append(_cannot("read the brokers", error))
        return render(request, "brokers.html", brokers=found, problems=problems)


async def _bounded(read: Awaitable[T]) -> T:
    return await asyncio.wait_for(read, KAFKA_TIMEOUT_S)


def _cannot(what: str, error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return f"cannot {what}: Kafka did not answer within {KAFKA_TIMEOUT_S:g} s"
    return f"cannot {what}: {type(error).__name__}: {error}"


def _offset(text: str, problems: list[str]) -> int | None:
    if not text.strip():
        return None
    try:
        offset = int(text)
    except ValueError:
        offset = -1
    if offset < 0:
        problems.append(f"offset {text!r}: give a whole number, 0 or more")
        return None
    return offset


def _moment(text: str, problems: list[str]) -> datetime | None:
    """An ISO 8601 time (what a datetime-local field sends); without a zone, UTC."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        problems.append(f"time {text!r}: give an ISO 8601 time, e.g. 2026-12-07T09:30 (UTC)")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _older(
    messages: list[Message], bounds: topic_browser.PartitionState | None, limit: int
) -> int | None:
    """Where the page before this one starts, if there is one."""
    if bounds is None:
        return None
    first = messages[0].offset if messages else bounds.end_offset
    return max(bounds.first_offset, first - limit) if first > bounds.first_offset else None


def _newer(messages: list[Message], bounds: topic_browser.PartitionState | None) -> int | None:
    """Where the page after this one starts, if there is one."""
    if bounds is None or not messages:
        return None
    following = messages[-1].offset + 1
    return following if following < bounds.end_offset else None
