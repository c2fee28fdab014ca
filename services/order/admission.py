"""Admission control of ``POST /orders``: past a bound, refuse at once instead of queueing.

Without it, a burst beyond what the database and the relay can take queues in the process:
every request waits for a pooled connection, latency grows for all, and clients time out
and send again (docs/architecture.md, "Overload"). Two bounds, both checked by
``AdmissionGate`` in front of routing, before the request's body is read, so a refusal
costs microseconds:

- **in flight**: at most ``max_in_flight`` order requests of this instance are being
  handled at once. The pool has ``SAGAKIT_DATABASE_POOL_SIZE`` + ``_MAX_OVERFLOW``
  connections; requests beyond a few times that only wait in line, and their wait is the
  latency the accepted ones would otherwise suffer. Refused with ``Retry-After: 1``.
- **outbox backlog**: when the rows not yet published exceed ``max_backlog_rows``, or the
  oldest has waited ``max_backlog_age_s``, the relay or Kafka cannot keep up, and each
  accepted order would only add to a saga latency already growing. Sampled every
  ``sample_interval_s`` from the metric's one indexed query (not per request); refused
  with ``Retry-After: 5`` until a sample shows it back under both bounds. A sample that
  fails (the database away) keeps the last verdict: the requests themselves will say so.

A refused request did nothing: sending it again with the same ``Idempotency-Key`` later
places the order once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.observability.metrics import Metric, counter, gauge
from shared.publishing.outbox import backlog_metrics

__all__ = ["Admission", "AdmissionGate", "Backlog", "Overloaded", "outbox_backlog"]

log = logging.getLogger(__name__)

IN_FLIGHT: Final = "in_flight"
OUTBOX_BACKLOG: Final = "outbox_backlog"
RETRY_AFTER_S: Final = {IN_FLIGHT: 1, OUTBOX_BACKLOG: 5}


@dataclass(frozen=True)
class Backlog:
    """The outbox's unsent rows and the age of the oldest (seconds)."""

    unsent: int
    oldest_age_s: float


BacklogReader = Callable[[], Awaitable[Backlog | None]]
"""Reads the backlog now; None when it could not be measured."""


def outbox_backlog(engine: AsyncEngine) -> BacklogReader:
    """The backlog as ``/metrics`` reads it (``shared.publishing.outbox.backlog_metrics``: one
    indexed query, None when the database does not answer in time)."""

    async def read() -> Backlog | None:
        values = {
            family.name: family.samples[0].value
            for family in await backlog_metrics(engine)
            if family.samples
        }
        if not values:
            return None
        return Backlog(
            unsent=int(values["sagakit_outbox_unsent_rows"]),
            oldest_age_s=float(values["sagakit_outbox_oldest_unsent_age_seconds"]),
        )

    return read


class Overloaded(Exception):
    """Refused: ``reason`` (``in_flight`` or ``outbox_backlog``), retry after
    ``retry_after_s`` seconds."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after_s = RETRY_AFTER_S[reason]


class Admission:
    """The bounds of ``POST /orders``; a component (it samples the backlog in the background)."""

    def __init__(
        self,
        max_in_flight: int,
        backlog: BacklogReader | None = None,
        *,
        max_backlog_rows: int = 50_000,
        max_backlog_age_s: float = 10.0,
        sample_interval_s: float = 1.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("at least one order request must be allowed in flight")
        self._max_in_flight = max_in_flight
        self._backlog = backlog
        self._max_rows = max_backlog_rows
        self._max_age_s = max_backlog_age_s
        self._interval = sample_interval_s
        self._in_flight = 0
        self._backlogged: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.shed: Counter[str] = Counter()
        """The requests refused, by reason."""

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the in-flight places for the block; ``Overloaded`` when there is none,
        or while the outbox is backlogged."""
        self.take()
        try:
            yield
        finally:
            self.release()

    def take(self) -> None:
        """Take one of the in-flight places (``release`` gives it back); ``Overloaded`` when
        there is none, or while the outbox is backlogged."""
        if self._backlogged is not None:
            self._refuse(OUTBOX_BACKLOG, self._backlogged)
        if self._in_flight >= self._max_in_flight:
            self._refuse(
                IN_FLIGHT,
                f"overloaded: {self._in_flight} order requests in flight on this instance "
                f"(SAGAKIT_MAX_IN_FLIGHT_ORDERS={self._max_in_flight}); retry later with the "
                "same Idempotency-Key",
            )
        self._in_flight += 1

    def release(self) -> None:
        """Give back a place ``take`` took."""
        self._in_flight -= 1

    def _refuse(self, reason: str, detail: str) -> None:
        self.shed[reason] += 1
        raise Overloaded(reason, detail)

    async def sample(self) -> None:
        """Read the backlog once and decide whether it refuses orders until the next sample."""
        if self._backlog is None:
            return
        backlog = await self._backlog()
        if backlog is None:
            return
        if backlog.unsent > self._max_rows or backlog.oldest_age_s > self._max_age_s:
            self._backlogged = (
                f"overloaded: the outbox holds {backlog.unsent} unsent events, the oldest "
                f"{backlog.oldest_age_s:.1f} s old (bounds: SAGAKIT_MAX_OUTBOX_BACKLOG_ROWS="
                f"{self._max_rows}, SAGAKIT_MAX_OUTBOX_BACKLOG_AGE_SECONDS={self._max_age_s:g}):"
                " events do not reach Kafka fast enough; retry later with the same "
                "Idempotency-Key"
            )
        else:
            self._backlogged = None

    async def start(self) -> None:
        if self._backlog is not None and self._task is None:
            self._task = asyncio.create_task(self._sample_forever(), name="order-admission")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sample_forever(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # a sampler that dies would leave the last verdict for ever
                log.exception("order admission: the outbox backlog was not sampled")
            await asyncio.sleep(self._interval)

    def metrics(self) -> list[Metric]:
        return [
            counter(
                "sagakit_orders_shed",
                "POST /orders refused with 503 before any work, by reason",
                ("reason",),
                {(reason,): self.shed[reason] for reason in (IN_FLIGHT, OUTBOX_BACKLOG)},
            ),
            gauge(
                "sagakit_orders_in_flight",
                "POST /orders requests being handled on this instance",
                (),
                {(): self._in_flight},
            ),
        ]


class AdmissionGate:
    """``admission`` in front of routing, for ``POST /orders`` (a pure ASGI middleware).

    Refused here, a request costs what reading its method and path costs: its body is never
    read, parsed or validated, and no route or dependency is resolved. Past the bound most
    requests are refused (at 600 orders/s offered on two cores, two in three), and refusals
    that took the framework's whole path took the CPU the accepted ones needed. The answer is
    the framework's own for an ``HTTPException``: ``{"detail": ...}`` and ``Retry-After``.
    """

    def __init__(self, app: ASGIApp, admission: Admission, path: str = "/orders") -> None:
        self.app = app
        self._admission = admission
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = (
            scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self._path
        )
        if not guarded:
            await self.app(scope, receive, send)
            return
        try:
            self._admission.take()
        except Overloaded as refusal:
            await _refuse(refusal, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._admission.release()


async def _refuse(refusal: Overloaded, send: Send) -> None:
    body = json.dumps({"detail": refusal.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(refusal.retry_after_s).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
