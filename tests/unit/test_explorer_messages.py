"""How the explorer's messages page shows a record: an event decoded, else text, else base64;
a long value cut to a line with the whole kept."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from services.events import PaymentFailed
from services.order.explorer.topic_pages import PREVIEW_CHARS, shown
from shared.ops.topic_browser import Message


def message(value: bytes | None, key: bytes | None = b"o-1") -> Message:
    headers = (("event_type", b"PaymentFailed"), ("raw", b"\xff\x00"))
    return Message(0, 7, datetime(2026, 12, 7, tzinfo=UTC), key, value, headers)


def test_an_event_is_decoded_and_shown_whole_indented() -> None:
    event = PaymentFailed(
        order_id="o-1", correlation_id="o-1", producer="payment", customer_id="ann",
        amount="1.00", reason="card declined",
    )  # fmt: skip

    seen = shown(message(event.model_dump_json().encode()))

    assert seen.kind == "PaymentFailed"
    assert seen.whole == event.model_dump_json(indent=2)
    assert seen.cut and len(seen.preview) <= PREVIEW_CHARS + 1
    assert seen.key == "o-1"
    assert seen.headers == [("event_type", "PaymentFailed"), ("raw", "base64:/wA=")]


def test_short_text_is_shown_as_it_is_and_not_cut() -> None:
    seen = shown(message(b"plain text", key=None))

    assert (seen.kind, seen.preview, seen.whole, seen.cut) == (
        "text",
        "plain text",
        "plain text",
        False,
    )
    assert seen.key == ""


def test_long_text_is_cut_to_a_line_with_the_whole_kept() -> None:
    text = "word " * 100

    seen = shown(message(text.encode()))

    assert seen.kind == "text" and seen.cut
    assert seen.preview.endswith("…") and len(seen.preview) == PREVIEW_CHARS + 1
    assert seen.whole == text


def test_binary_is_base64_and_nothing_is_empty() -> None:
    binary = bytes(range(256))

    seen = shown(message(binary))

    assert seen.kind == "binary (base64)"
    assert seen.whole == base64.b64encode(binary).decode()
    assert shown(message(None)).kind == "empty"
    assert shown(message(b"")).kind == "empty"


def test_sizes_read_as_a_person_would_say_them() -> None:
    from services.order.explorer.topic_pages import human_bytes

    assert [human_bytes(n) for n in (None, 0, 1023, 1536, 5 * 1024**2, 3 * 1024**4)] == [
        "-",
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3072.0 GiB",
    ]
