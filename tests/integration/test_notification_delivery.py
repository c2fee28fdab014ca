"""The notification deliverer against a real HTTP receiver (the demo receiver,
services/notification/receiver.py, served by uvicorn on a free port): retried with backoff
until it answers, delivered once per event id with the same ``Idempotency-Key`` on every
attempt, a lost answer recognised by the receiver as a duplicate, and dead-lettered when the
receiver never takes it."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.events import OrderCompleted
from services.notification import api, store
from services.notification import app as notification
from services.notification.delivery import WebhookDeliverer
from services.notification.model import NotificationStatus
from services.notification.receiver import HOOK_PATH, Receiver, receiver_app
from shared.testing.harness import Harness
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import wait_until

pytestmark = pytest.mark.integration


@asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    """The demo receiver served on a free port, in this event loop; its hook's URL."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(receiver_app(receiver), log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[listening]))

    async def started() -> bool:
        return server.started

    try:
        await wait_until(started, timeout_s=30, what="the receiver serving")
        yield f"http://127.0.0.1:{listening.getsockname()[1]}{HOOK_PATH}"
    finally:
        server.should_exit = True
        await task
        listening.close()


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
    receiver = Receiver(fail_first=2)
    async with serving(receiver) as url, delivering(infra, url, attempts=5) as saga:
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
    async with (
        serving(receiver) as url,
        delivering(infra, url, attempts=5, timeout_s=0.5) as saga,
    ):
        [key] = await notify(saga, "o-3")
        await settled(saga, [key], NotificationStatus.DELIVERED)

    assert receiver.posts() == {key: 2}
    assert list(receiver.taken) == [key]
    assert receiver.duplicates == Counter({key: 1})


@pytest.mark.parametrize(("status", "attempts_made"), [(500, 3), (400, 1)])
async def test_a_receiver_that_never_takes_it_dead_letters_the_notification(
    infra: Infrastructure, status: int, attempts_made: int
) -> None:
    receiver = Receiver(always_fail=True, fail_status=status)
    async with serving(receiver) as url, delivering(infra, url, attempts=3) as saga:
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
    async with serving(Receiver()) as url:
        pass  # the port is closed again: nothing listens there
    async with delivering(infra, url, attempts=2) as saga:
        [key] = await notify(saga, "o-5")
        await settled(saga, [key], NotificationStatus.DEAD)
        _, attempts, error = (await statuses(saga))[key]

    assert attempts == 2
    assert error is not None and error.startswith("ClientConnectorError")


async def test_a_dead_notification_is_delivered_again_once_the_receiver_is_fixed(
    infra: Infrastructure,
) -> None:
    receiver = Receiver(always_fail=True, fail_status=500)
    async with serving(receiver) as url, delivering(infra, url, attempts=2) as saga:
        [key] = await notify(saga, "o-6")
        await settled(saga, [key], NotificationStatus.DEAD)
        receiver.always_fail = False  # fixed: it takes the next post

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
