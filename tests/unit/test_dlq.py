from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiokafka.structs import ConsumerRecord

from shared.contracts.errors import TransientError
from shared.publishing.dlq import dead_letter_headers, rfc3339

pytestmark = pytest.mark.unit

CONTRACT_HEADERS = {
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.consumer.group",
    "dlq.error.type",
    "dlq.error.message",
    "dlq.attempts",
    "dlq.failed_at",
}


def received(headers: list[tuple[str, bytes]] | None = None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="order-created",
        partition=4,
        offset=1234,
        timestamp=0,
        timestamp_type=0,
        key=b"o-1",
        value=b"\xff not json",
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=10,
        headers=headers if headers is not None else [("event_id", b"e-1")],
    )


FAILED_AT = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_dead_letter_keeps_the_original_headers_and_adds_every_contract_header() -> None:
    headers = dead_letter_headers(
        received(),
        group="payment",
        error=TransientError("db timeout"),
        attempts=3,
        failed_at=FAILED_AT,
    )

    assert headers[0] == ("event_id", b"e-1")
    assert dict(headers[1:]) == {
        "dlq.original.topic": b"order-created",
        "dlq.original.partition": b"4",
        "dlq.original.offset": b"1234",
        "dlq.consumer.group": b"payment",
        "dlq.error.type": b"TransientError",
        "dlq.error.message": b"db timeout",
        "dlq.attempts": b"3",
        "dlq.failed_at": b"2024-05-01T12:00:00.123Z",
    }


def test_a_replayed_dead_letter_carries_each_dlq_header_once_describing_the_last_failure() -> None:
    first = dead_letter_headers(
        received(), group="payment", error=ValueError("first"), attempts=1, failed_at=FAILED_AT
    )

    again = dead_letter_headers(
        received(first),
        group="payment",
        error=KeyError("second"),
        attempts=2,
        failed_at=FAILED_AT,
    )

    names = [name for name, _ in again]
    assert sorted(names) == sorted(["event_id", *CONTRACT_HEADERS])
    assert dict(again)["dlq.error.type"] == b"KeyError"
    assert dict(again)["dlq.attempts"] == b"2"


def test_an_error_without_a_message_is_described_by_its_repr() -> None:
    headers = dict(
        dead_letter_headers(
            received([]), group="g", error=RuntimeError(), attempts=1, failed_at=FAILED_AT
        )
    )

    assert headers["dlq.error.message"] == b"RuntimeError()"


def test_a_very_long_error_message_is_shortened() -> None:
    headers = dict(
        dead_letter_headers(
            received([]),
            group="g",
            error=ValueError("x" * 10_000),
            attempts=1,
            failed_at=FAILED_AT,
        )
    )

    assert len(headers["dlq.error.message"]) == 2000
    assert headers["dlq.error.message"].endswith(b"...")


def test_failed_at_is_rfc3339_in_utc_whatever_the_clock_zone() -> None:
    paris = timezone(timedelta(hours=2))

    assert rfc3339(datetime(2024, 5, 1, 14, 0, tzinfo=paris)) == "2024-05-01T12:00:00.000Z"
