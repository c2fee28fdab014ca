"""Dead-lettering: a record no handler can take goes to its topic's ``-dlq`` twin, unchanged.

The dead letter keeps the original key and value byte for byte (so it can be replayed as it
was) and the original headers, plus the ``dlq.*`` headers (docs/events.md) saying
where it came from, who gave up on it, why, and after how many attempts. The runner commits
the original offset only once the broker has acknowledged the dead letter: a dead letter
that is not stored is a lost event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from shared.backoff import backoff_delay
from shared.contracts.topics import Topics
from shared.publishing.batch_sending import send_alone

__all__ = [
    "DLQ_HEADER_PREFIX",
    "DeadLetterQueue",
    "ReceivedRecord",
    "dead_letter_headers",
    "rfc3339",
]

log = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "dlq."

# Header values travel with every dead letter; a stack of wrapped errors can be long.
MAX_ERROR_MESSAGE_CHARS = 2000


class ReceivedRecord(Protocol):
    """What the DLQ needs of a consumed record (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339 with milliseconds: ``2024-05-01T12:00:00.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error_message(error: BaseException) -> str:
    message = str(error) or repr(error)
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
    return message


def dead_letter_headers(
    record: ReceivedRecord,
    *,
    group: str,
    error: BaseException,
    attempts: int,
    failed_at: datetime,
) -> list[tuple[str, bytes]]:
    """The original headers plus the ``dlq.*`` headers of docs/events.md, as UTF-8 bytes.

    ``dlq.*`` headers already on the record (a dead letter replayed and failed again) are
    replaced rather than repeated, so each name appears once and describes the last failure.
    """
    kept = [(name, value) for name, value in record.headers if not name.startswith("dlq.")]
    added = {
        "dlq.original.topic": record.topic,
        "dlq.original.partition": str(record.partition),
        "dlq.original.offset": str(record.offset),
        "dlq.consumer.group": group,
        "dlq.error.type": type(error).__name__,
        "dlq.error.message": _error_message(error),
        "dlq.attempts": str(attempts),
        "dlq.failed_at": rfc3339(failed_at),
    }
    return kept + [(name, value.encode()) for name, value in added.items()]


class DeadLetterQueue:
    """Sends dead letters and waits for the broker's acknowledgement, however long it takes.

    ``producer`` is a started ``AIOKafkaProducer`` built by
    ``shared.publishing.producer.build_producer`` (acks=all, idempotent). Each dead letter goes out
    as a batch of its own (``shared.publishing.batch_sending.send_alone``), so that one which fails,
    an expired one included, gives its sequence numbers back: otherwise every later dead letter to
    that partition would be refused as out of order until a restart.
    """

    def __init__(
        self,
        producer: Any,
        *,
        group: str,
        retry_base_ms: int = 100,
        retry_max_ms: int = 5000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._producer = producer
        self._group = group
        self._retry_base_ms = retry_base_ms
        self._retry_max_ms = retry_max_ms
        self._sleep = sleep
        self._clock = clock

    async def send(self, record: ReceivedRecord, error: BaseException, attempts: int) -> None:
        """Store ``record`` in its dead-letter topic; retry until the broker acknowledges it.

        Never gives up on its own: the caller must not commit the offset before this returns,
        and a partition that cannot dead-letter stops rather than losing the record. Cancel
        the task (revocation, shutdown) to abandon it; the record is then redelivered.
        """
        topic = Topics.dlq(record.topic)
        headers = dead_letter_headers(
            record, group=self._group, error=error, attempts=attempts, failed_at=self._clock()
        )
        failures = 0
        while True:
            try:
                stored = await send_alone(
                    self._producer,
                    topic,
                    key=record.key,
                    value=record.value,
                    headers=headers,
                    writer=f"dead letters of {self._group}",
                )
                # Shielded: a cancelled send leaves its batch in the producer anyway, and the
                # partition's next dead letter must wait for its answer.
                await asyncio.shield(stored)
                return
            except Exception as produce_error:
                failures += 1
                delay = backoff_delay(
                    min(failures, 16), base_ms=self._retry_base_ms, max_ms=self._retry_max_ms
                )
                # Loud on purpose: the partition is stuck until this succeeds.
                log.error(
                    "dead-lettering %s[%d]@%d to %s failed (%r, attempt %d); the offset stays "
                    "uncommitted, retrying in %.1fs",
                    record.topic,
                    record.partition,
                    record.offset,
                    topic,
                    produce_error,
                    failures,
                    delay,
                )
                await self._sleep(delay)
