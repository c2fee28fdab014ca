"""Orders offered at a steady rate for the whole run, every answer timed.

Each order is due at a fixed moment (``start + i / rate``), so a stall is made up afterwards
rather than lowering the rate, and at most ``concurrency`` requests are unanswered at once
(beyond that, due orders wait: an overloaded system shows as a growing backlog, not as a
load generator that runs out of memory). A request that gets no answer, a 5xx or a 503 is
sent again with the same ``Idempotency-Key`` (after the ``Retry-After`` the 503 asks for),
until ``give_up_s`` has passed since the order was due.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.connections import KeepAliveClients

__all__ = ["Answer", "Load", "offer_orders"]

RETRY_PAUSE_S = 0.5
MAX_RETRY_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class Answer:
    """One request: when its answer came (seconds since the load began), how long it took,
    and its status (0: no answer)."""

    at_s: float
    latency_s: float
    status: int


@dataclass
class Load:
    """What offering the orders did."""

    answers: list[Answer] = field(default_factory=list)
    accepted: int = 0
    given_up: dict[str, int] = field(default_factory=dict)
    """Orders given up on, by the last answer."""
    backlog_max: int = 0
    """Most orders due but not yet sent at once (the generator fell behind the rate)."""
    seconds: float = 0.0

    def window(self, since_s: float, until_s: float) -> list[Answer]:
        """The answers that came in ``[since_s, until_s)`` (they are kept in that order)."""
        first = bisect.bisect_left(self.answers, since_s, key=lambda a: a.at_s)
        last = bisect.bisect_left(self.answers, until_s, key=lambda a: a.at_s)
        return self.answers[first:last]


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return RETRY_PAUSE_S


@dataclass(frozen=True)
class _Offer:
    """What every order of a run is sent with."""

    clients: KeepAliveClients
    url: str
    began: float
    give_up_s: float
    load: Load

    async def one(self, body: dict[str, Any], key: str) -> None:
        give_up_at = time.monotonic() + self.give_up_s
        last = "no answer"
        while time.monotonic() < give_up_at:
            sent = time.monotonic()
            pause = RETRY_PAUSE_S
            try:
                async with self.clients.client() as http:
                    response = await http.post(
                        self.url, json=body, headers={"Idempotency-Key": key}
                    )
            except httpx.HTTPError as error:
                status, last = 0, type(error).__name__
            else:
                status, last = response.status_code, f"HTTP {response.status_code}"
                if status == 503:
                    pause = _retry_after(response)
            now = time.monotonic()
            self.load.answers.append(Answer(now - self.began, now - sent, status))
            if status == 202:
                self.load.accepted += 1
                return
            if 400 <= status < 500:
                break  # the request itself is wrong: sending it again changes nothing
            await asyncio.sleep(pause)
        self.load.given_up[last] = self.load.given_up.get(last, 0) + 1


async def offer_orders(
    order_url: str,
    bodies: Iterable[dict[str, Any]],
    *,
    key_prefix: str,
    rate: float,
    concurrency: int,
    give_up_s: float,
    load: Load,
) -> Load:
    """Offer ``bodies`` at ``rate`` per second into ``load`` (which the sampler reads while
    this runs); return it once every order is accepted or given up on."""
    began = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    # One-connection clients lent per request (bench.connections): httpx's own pool spends
    # a core on book-keeping with a few hundred connections, on the machine under test.
    clients = KeepAliveClients(concurrency, timeout=10)
    try:
        offer = _Offer(clients, f"{order_url}/orders", began, give_up_s, load)

        async def one(index: int, body: dict[str, Any]) -> None:
            try:
                await offer.one(body, f"{key_prefix}-{index}")
            finally:
                gate.release()

        for index, body in enumerate(bodies):
            due = began + index / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await gate.acquire()
            load.backlog_max = max(load.backlog_max, int((time.monotonic() - due) * rate))
            task = asyncio.create_task(one(index, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*tasks)
    finally:
        await clients.aclose()
    load.seconds = time.monotonic() - began
    return load
