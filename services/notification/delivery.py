"""The deliverer: posts the notifications due to the webhook, retries them with backoff, and
dead-letters those whose attempts ran out; a component of the notification service.

Why a delivery table and a component, rather than posting from the handler
    The handler only records the notification (``PENDING``), in the unit of work that claims
    its event in the inbox: quick, and a redelivered event finds the notification already
    there. Posting from the handler would hold the consumer's transaction (its inbox row, and
    every record of its run) open for as long as the webhook takes, stall the partition
    behind a slow receiver, and re-post the run's other notifications whenever one of them
    failed; its retries would be the consumer's few quick ones, and its dead letter the
    event's own topic's. Here the retries are the notification's: ``attempts`` of them, spaced
    by exponential backoff (minutes if need be), and a dead letter is a notification marked
    ``DEAD`` with its last error, visible on ``GET /notifications``.

No row lock during a call
    Each pass claims a few due notifications in a short transaction (``FOR UPDATE SKIP
    LOCKED``, so instances take different ones), counting the attempt and pushing its next
    one a lease ahead, and commits; the posts then run with no transaction open, and each
    outcome is recorded in one more short transaction. A deliverer that dies in between
    leaves its notifications to be claimed again when the lease ends.

At least once, recognisable as a duplicate
    A post whose answer is lost is posted again, so a receiver may see a notification
    twice: every post carries the notification's event id as its ``Idempotency-Key``, the
    same on every attempt, by which the receiver knows the second for a copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import aiohttp

from services.notification import store
from services.notification.model import NotificationStatus, after_attempt, judge_answer
from shared.backoff import backoff_delay
from shared.observability.metrics import Metric, counter
from shared.storage.db import UnitOfWorkFactory

__all__ = ["IDEMPOTENCY_KEY", "DeliveryPolicy", "WebhookDeliverer"]

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = "Idempotency-Key"
"""The header that names a notification, the same on every attempt: its event id."""


@dataclass(frozen=True)
class DeliveryPolicy:
    """Where notifications go and how hard the deliverer tries."""

    webhook_url: str
    attempts: int = 8
    base_delay_ms: int = 1_000
    max_delay_ms: int = 300_000
    timeout_s: float = 5.0
    batch_size: int = 20
    """Notifications a pass claims and posts at once, each on a connection of its own."""
    poll_interval_s: float = 0.5

    @property
    def lease(self) -> timedelta:
        """How long a claimed notification is left to its deliverer: past every post's
        timeout, so that only a dead deliverer's claims are taken again."""
        return timedelta(seconds=2 * self.timeout_s + 5)


class WebhookDeliverer:
    """Posts due notifications to the webhook until stopped."""

    def __init__(self, units: UnitOfWorkFactory, policy: DeliveryPolicy) -> None:
        self._units = units
        self._policy = policy
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._outcomes: Counter[str] = Counter()

    async def start(self) -> None:
        """Start delivering in the background; returns at once."""
        # A pass's posts run at once, each on a connection kept alive for the next passes.
        # aiohttp rather than httpx: 0.2 ms of CPU a post against 1.7 ms (3,000 posts to the
        # demo receiver, 20 at a time, on the 2-core machine), httpx's share being most of
        # this service's CPU (bench/README.md).
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._policy.batch_size),
            timeout=aiohttp.ClientTimeout(total=self._policy.timeout_s),
        )
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="notification-deliverer")

    async def stop(self) -> None:
        """Stop after the pass in hand (bounded by the posts' timeout)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver_due(self) -> int:
        """One pass: claim, post and record the notifications due now; how many it tried."""
        async with self._units() as uow:
            claimed = await store.claim_due(
                uow.session, limit=self._policy.batch_size, lease=self._policy.lease
            )
            await uow.commit()
        if not claimed:
            return 0
        answers = await asyncio.gather(*(self._post(delivery) for delivery in claimed))
        attempts = [
            self._judged(delivery, status_code, error)
            for delivery, (status_code, error) in zip(claimed, answers, strict=True)
        ]
        async with self._units() as uow:  # every outcome of the pass in one statement
            await store.record_attempts(uow.session, attempts)
            await uow.commit()
        for attempt in attempts:
            self._count(attempt)
        return len(claimed)

    def metrics(self) -> Sequence[Metric]:
        """Delivery attempts by outcome (``delivered``, ``retry``, ``dead``)."""
        samples: dict[tuple[str, ...], float] = {
            (outcome,): float(n) for outcome, n in self._outcomes.items()
        }
        return [
            counter(
                "sagakit_notification_attempts",
                "webhook delivery attempts by outcome",
                ("outcome",),
                samples,
            )
        ]

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                tried = await self.deliver_due()
            except Exception:  # the database went away: try again at the next pass
                log.exception("delivering notifications failed; trying again")
                tried = 0
            if tried < self._policy.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._policy.poll_interval_s)

    async def _post(self, delivery: store.Delivery) -> tuple[int | None, str | None]:
        """The webhook's status code, or None and why there was no answer."""
        assert self._session is not None, "start the deliverer first"
        headers = {IDEMPOTENCY_KEY: delivery.event_id}
        try:
            async with self._session.post(
                self._policy.webhook_url,
                json=delivery.body,
                headers=headers,
                allow_redirects=False,  # a redirected webhook is the receiver's to fix
            ) as answer:
                await answer.read()  # read to the end: the connection serves the next post
                code = answer.status
        except TimeoutError:
            return None, f"TimeoutError: no answer within {self._policy.timeout_s:g} s"
        except aiohttp.ClientError as error:
            return None, f"{type(error).__name__}: {error}"[:500]
        return code, None if 200 <= code < 300 else f"HTTP {code}"

    def _judged(
        self, delivery: store.Delivery, code: int | None, error: str | None
    ) -> store.Attempt:
        """What the answer ``code`` (None: no answer, for ``error``) makes of ``delivery``."""
        verdict = judge_answer(code)
        status = after_attempt(
            verdict, attempts=delivery.attempts, max_attempts=self._policy.attempts
        )
        retry_in = timedelta(
            seconds=backoff_delay(
                delivery.attempts,
                base_ms=self._policy.base_delay_ms,
                max_ms=self._policy.max_delay_ms,
            )
        )
        return store.Attempt(delivery, status, retry_in, error)

    def _count(self, attempt: store.Attempt) -> None:
        dead = attempt.status is NotificationStatus.DEAD
        delivered = attempt.status is NotificationStatus.DELIVERED
        self._outcomes["dead" if dead else "delivered" if delivered else "retry"] += 1
        if dead:
            log.warning(
                "notification %s dead-lettered after %d attempts: %s",
                attempt.delivery.event_id,
                attempt.delivery.attempts,
                attempt.error,
            )
