"""The notification deliverer against a real HTTP receiver (a threaded ``http.server`` on a
free port): retried with backoff until it answers, delivered once per event id with the same
``Idempotency-Key`` on every attempt, a lost answer recognised by the receiver as a
duplicate, and dead-lettered when the receiver never takes it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.events import OrderCompleted
from services.notification import api, store
from services.notification import app as notification
from services.notification.delivery import WebhookDeliverer
from services.notification.model import NotificationStatus
from shared.testing.harness import Harness
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import wait_until

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """A webhook that fails each notification's first ``failures`` posts with ``status``
    (all of them when ``failures`` is None), then takes it; a key it took before is a
    duplicate, answered 200 and not taken again. ``slow_first``: the first post of each key
    is taken, but answered after the sender stopped waiting (a lost answer)."""

    failures: int | None = 0
    status: int = 503
    slow_first: float = 0.0
    keys: list[str] = field(default_factory=list)
    """The Idempotency-Key of every post, in order."""
    taken: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: Counter[str] = field(default_factory=Counter)
    _failed: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, key: str, body: dict[str, Any]) -> tuple[int, float]:
        with self._lock:
            self.keys.append(key)
            if key in self.taken:
                self.duplicates[key] += 1
                return 200, 0.0
            if self.failures is None or self._failed[key] < self.failures:
                self._failed[key] += 1
                return self.status, 0.0
            self.taken[key] = body
            return 200, self.slow_first

    def posts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(self.keys))


@contextmanager
def serving(receiver: Receiver) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            code, delay = receiver.answer(self.headers.get("Idempotency-Key", ""), body)
            time.sleep(delay)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/notifications"
    finally:
        server.shutdown()
        server.server_close()


@asynccontextmanager
async def delivering(
    infra: Infrastructure, url: str, *, attempts: int, timeout_s: float = 5.0
) -> AsyncIterator[Harness]:
    settings = {
        "notification_webhook_url": url,
        "notification_attempts": attempts,
        "notification_retry_base_delay_ms": 20,
        "notification_retry_max_delay_ms": 100,
        "notification_timeout_seconds": timeout_s,
        "notification_poll_interval_ms": 20,
    }
    async with Harness(
        notification.service, postgres_url=infra.postgres_url, settings=settings
    ) as saga:
        policy = saga.platform("notification").settings.delivery_policy()
        assert policy is not None
        deliverer = WebhookDeliverer(saga.units("notification"), policy)
        await deliverer.start()
        try:
            yield saga
        finally:
            await deliverer.stop()


async def notify(saga: Harness, *order_ids: str) -> list[str]:
    """Notifications of completed orders, recorded as the handler records them; their keys."""
    events = [
        OrderCompleted.first(order_id=o, producer="order", customer_id="alice", total="9.99")
        for o in order_ids
    ]
    await saga.publish(*events)
    await saga.settle()
    return [str(event.event_id) for event in events]


async def statuses(saga: Harness) -> dict[str, tuple[NotificationStatus, int, str | None]]:
    async with saga.units("notification")() as uow:
        found = await store.find_notifications(
            uow.session, customer_id="alice", order_id=None, limit=100, after=None
        )
    return {n.event_id: (n.status, n.attempts, n.last_error) for n in found}


async def settled(saga: Harness, keys: list[str], status: NotificationStatus) -> None:
    async def reached() -> bool:
        now = await statuses(saga)
        return all(now[key][0] is status for key in keys)

    await wait_until(reached, timeout_s=30, what=f"every notification {status.value}")


async def test_a_failing_receiver_is_retried_until_it_takes_each_notification_once(
    infra: Infrastructure,
) -> None:
    receiver = Receiver(failures=2)
    with serving(receiver) as url:
        async with delivering(infra, url, attempts=5) as saga:
            keys = await notify(saga, "o-1", "o-2")
            await settled(saga, keys, NotificationStatus.DELIVERED)
            final = await statuses(saga)

    assert receiver.posts() == {key: 3 for key in keys}  # two refused, the third taken
    assert sorted(receiver.taken) == sorted(keys)
    assert receiver.duplicates == Counter()
    assert receiver.taken[keys[0]]["notification_id"] == keys[0]
    assert receiver.taken[keys[0]]["text"] == "Your order o-1 is on its way: 9.99 charged."
    assert {key: final[key][:2] for key in keys} == {
        key: (NotificationStatus.DELIVERED, 3) for key in keys
    }


async def test_a_lost_answer_is_posted_again_and_the_receiver_knows_the_copy(
    infra: Infrastructure,
) -> None:
    receiver = Receiver(slow_first=2.0)  # answers after the deliverer gave up waiting
    with serving(receiver) as url:
        async with delivering(infra, url, attempts=5, timeout_s=0.5) as saga:
            [key] = await notify(saga, "o-3")
            await settled(saga, [key], NotificationStatus.DELIVERED)

    assert receiver.posts() == {key: 2}
    assert list(receiver.taken) == [key]
    assert receiver.duplicates == Counter({key: 1})


@pytest.mark.parametrize(("status", "attempts_made"), [(500, 3), (400, 1)])
async def test_a_receiver_that_never_takes_it_dead_letters_the_notification(
    infra: Infrastructure, status: int, attempts_made: int
) -> None:
    receiver = Receiver(failures=None, status=status)
    with serving(receiver) as url:
        async with delivering(infra, url, attempts=3) as saga:
            [key] = await notify(saga, "o-4")
            await settled(saga, [key], NotificationStatus.DEAD)
            final = await statuses(saga)

    # 500 is tried until the attempts run out; 400 is a refusal for good, not tried again.
    assert final[key] == (NotificationStatus.DEAD, attempts_made, f"HTTP {status}")
    assert receiver.posts() == {key: attempts_made}
    assert receiver.taken == {}


async def test_a_receiver_that_is_down_is_retried_then_dead_lettered(
    infra: Infrastructure,
) -> None:
    with serving(Receiver()) as url:
        pass  # the port is closed again: nothing listens there
    async with delivering(infra, url, attempts=2) as saga:
        [key] = await notify(saga, "o-5")
        await settled(saga, [key], NotificationStatus.DEAD)
        _, attempts, error = (await statuses(saga))[key]

    assert attempts == 2
    assert error is not None and error.startswith("ConnectError")


def test_a_receiver_keyed_by_event_is_what_the_tests_assume() -> None:
    # The fake's own rule, so that the assertions above mean what they say.
    receiver = Receiver(failures=1)
    assert [receiver.answer("k", {})[0] for _ in range(3)] == [503, 200, 200]
    assert receiver.duplicates == Counter({"k": 1})
    assert receiver.posts() == {"k": 3}


async def test_a_dead_notification_is_delivered_again_once_the_receiver_is_fixed(
    infra: Infrastructure,
) -> None:
    receiver = Receiver(failures=None, status=500)
    with serving(receiver) as url:
        async with delivering(infra, url, attempts=2) as saga:
            [key] = await notify(saga, "o-6")
            await settled(saga, [key], NotificationStatus.DEAD)
            receiver.failures = 0  # fixed: it takes the next post

            app = FastAPI()
            app.include_router(api.admin_router(saga.units("notification")))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://n") as admin:
                again = await admin.post(f"/notifications/{key}/deliver-again")
                await settled(saga, [key], NotificationStatus.DELIVERED)
                twice = await admin.post(f"/notifications/{key}/deliver-again")
                unknown = await admin.post("/notifications/no-such-event/deliver-again")
            final = await statuses(saga)

    assert (again.status_code, again.json()) == (200, {"event_id": key, "status": "pending"})
    assert (twice.status_code, unknown.status_code) == (409, 404)
    assert final[key] == (NotificationStatus.DELIVERED, 1, None)
    assert receiver.posts() == {key: 3}
    assert list(receiver.taken) == [key]
