"""Sending orders over HTTP: one timed POST, closed-loop clients and an open-loop schedule.

Every latency is measured from when the request was *due*: in the closed loop that is when
the client sent it, in the open loop its place in the schedule, so a server (or a load
generator) that falls behind shows up in the numbers instead of slowing the schedule down.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx

from bench.connections import KeepAliveClients, one_connection_client

__all__ = [
    "NOT_ANSWERED",
    "NOT_SENT",
    "Attempt",
    "Bodies",
    "Clock",
    "accepted_ids",
    "closed_loop",
    "error_counts",
    "open_loop",
]

NOT_ANSWERED = 0
"""``Attempt.status`` when no answer came: a refused connection, a reset, a timeout."""
NOT_SENT = -1
"""``Attempt.status`` when the open loop skipped a request: too many were in flight."""
OPEN_LOOP_CONNECTIONS = 256


class Clock:
    """Wall-clock seconds read from the monotonic clock, so they never jump while a run lasts.

    Wall time (not only durations) because the benchmark compares the client's moments with
    the timestamps the services write into their databases on the same machine.
    """

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._perf0 = time.perf_counter()

    def now(self) -> float:
        return self._wall0 + (time.perf_counter() - self._perf0)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One order sent (or not): when it was due, when it was answered, and how."""

    index: int
    status: int
    due: float
    finished: float
    order_id: str | None = None
    error: str | None = None
    sent: float | None = None
    """When the load generator got to it: later than ``due`` when the generator lagged."""

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300 and self.order_id is not None

    @property
    def latency_ms(self) -> float:
        return (self.finished - self.due) * 1000


Bodies = Callable[[int], dict[str, Any]]
"""The ``POST /orders`` body of an order index (``Workload.body``)."""


async def post_order(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], index: int, due: float, clock: Clock
) -> Attempt:
    """``POST {url}/orders`` with ``body``; never raises for a failed request."""
    sent = clock.now()
    try:
        response = await http.post(f"{url}/orders", json=body)
    except httpx.HTTPError as error:
        name = type(error).__name__
        return Attempt(index, NOT_ANSWERED, due, clock.now(), error=name, sent=sent)
    finished = clock.now()
    if not response.is_success:
        text = response.text[:200]
        return Attempt(index, response.status_code, due, finished, error=text, sent=sent)
    order_id = str(response.json()["order_id"])
    return Attempt(index, response.status_code, due, finished, order_id=order_id, sent=sent)


async def closed_loop(
    url: str,
    bodies: Bodies,
    *,
    clients: int,
    clock: Clock,
    first_index: int = 0,
    count: int | None = None,
    seconds: float | None = None,
    timeout: float = 30.0,
) -> list[Attempt]:
    """``clients`` keep-alive clients, each sending its next order once the last is answered.

    Stops after ``count`` orders in all, or once ``seconds`` have passed, whichever is first.
    """
    if count is None and seconds is None:
        raise ValueError("closed_loop needs a count or a duration")
    stop_at = clock.now() + seconds if seconds is not None else None
    stop = first_index + count if count is not None else None
    indices: Iterator[int] = itertools.count(first_index)
    attempts: list[Attempt] = []

    async def client() -> None:
        # One connection per client: 32 clients are 32 keep-alive connections, as 32 users'.
        async with one_connection_client(timeout) as http:
            while True:
                index = next(indices)
                if (stop is not None and index >= stop) or (
                    stop_at is not None and clock.now() >= stop_at
                ):
                    return
                body = bodies(index)
                attempts.append(await post_order(http, url, body, index, clock.now(), clock))

    await asyncio.gather(*(client() for _ in range(clients)))
    return sorted(attempts, key=lambda attempt: attempt.index)


async def open_loop(
    url: str,
    bodies: Bodies,
    *,
    rate: float,
    seconds: float,
    clock: Clock,
    first_index: int = 0,
    max_in_flight: int = 2000,
    timeout: float = 10.0,
) -> list[Attempt]:
    """Send ``rate`` orders per second for ``seconds``, each at its time, answered or not.

    A request that would exceed ``max_in_flight`` is not sent (``NOT_SENT``): it bounds what
    an overloaded server can pile up, and counts as a miss. One that finds no connection free
    waits for one (counted in its latency), ``timeout`` at most.
    """
    total = round(rate * seconds)
    start = clock.now()
    attempts: list[Attempt] = []
    tasks: set[asyncio.Task[None]] = set()
    connections = KeepAliveClients(OPEN_LOOP_CONNECTIONS, timeout)

    async def send(index: int, due: float) -> None:
        # "Sent" is when the generator got to it: waiting for a connection is the server's
        # slowness (it holds them all), and counts in the latency, not as the generator's lag.
        started = clock.now()
        try:
            async with asyncio.timeout(timeout), connections.client() as http:
                attempt = await post_order(http, url, bodies(index), index, due, clock)
        except TimeoutError:
            attempt = Attempt(index, NOT_ANSWERED, due, clock.now(), error="Timeout")
        attempts.append(replace(attempt, sent=started))

    try:
        for offset in range(total):
            due = start + offset / rate
            delay = due - clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            index = first_index + offset
            if len(tasks) >= max_in_flight:
                attempts.append(Attempt(index, NOT_SENT, due, due, error="too many in flight"))
                continue
            task = asyncio.create_task(send(index, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
    finally:
        await connections.aclose()
    return sorted(attempts, key=lambda attempt: attempt.index)


def accepted_ids(attempts: list[Attempt], keep: Callable[[Attempt], bool] = bool) -> list[str]:
    """The order ids of the accepted attempts that ``keep`` selects."""
    return [a.order_id for a in attempts if a.accepted and a.order_id and keep(a)]


def error_counts(attempts: list[Attempt]) -> dict[str, int]:
    """Failed attempts by HTTP status, or by the error when no answer came."""
    return dict(
        Counter(str(a.status) if a.status > 0 else str(a.error) for a in attempts if not a.accepted)
    )
