"""``make demo``'s notification scenarios: a delivery, a refusing receiver retried, a copy.

The local stack runs the webhook receiver beside the service (services/notification/
companions.py) and points ``SAGAKIT_NOTIFICATION_WEBHOOK_URL`` at it; each scenario places an
order, waits for its notification to be delivered (polling, with a cap), and shows it as the
service and the receiver see it. The receiver is told how to misbehave (``PUT /behaviour``)
for one scenario and mended afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from deploy.demo.client import SagaClient, SystemUrls
from deploy.demo.show import say, short, table, wait_for
from services.notification.app import NotificationSettings
from services.notification.companions import COMPANIONS

__all__ = ["SCENARIOS"]

RUN = uuid.uuid4().hex[:6]
RECEIVER_URL = COMPANIONS[0].url_var
WAIT_S = 60.0


class Scene:
    """One scenario's view of the system: the saga's client, the service, the receiver."""

    def __init__(self, client: SagaClient, env: Mapping[str, str]) -> None:
        self.client = client
        self.env = env
        self.service = client.urls.service("notification")
        self.receiver = env[RECEIVER_URL]

    async def completed_order(self, name: str) -> dict[str, Any]:
        """A fresh customer's order, once COMPLETED."""
        customer = f"{name}-{RUN}"
        sku = f"{name}-scarf-{RUN}"
        await self.client.set_balance(customer, "100.00")
        await self.client.set_stock(sku, 5)
        placed = await self.client.place_order(customer, [(sku, 1, "15.00")])
        order = await self.client.wait_terminal(placed["order_id"])
        say(f"  order {short(order['order_id'])} of {customer} -> {order['status']}")
        return order

    async def notification(self, order_id: str) -> dict[str, Any] | None:
        """The order's OrderCompleted notification, when there is one."""
        found: list[dict[str, Any]] = await self._json(
            "GET", f"{self.service}/notifications", params={"order_id": order_id}
        )
        return next((n for n in found if n["event_type"] == "OrderCompleted"), None)

    async def delivered(self, order_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            found = await self.notification(order_id)
            return found if found and found["status"] == "delivered" else None

        return await wait_for(f"the notification of order {order_id} delivered", probe, WAIT_S)

    async def behave(self, **behaviour: Any) -> None:
        """Tell the receiver how to answer the posts to come ({}: well)."""
        await self._json("PUT", f"{self.receiver}/behaviour", json=behaviour)

    async def received(self, key: str) -> dict[str, Any]:
        """What became of the posts of ``key`` at the receiver."""
        answer: dict[str, Any] = await self._json("GET", f"{self.receiver}/received/{key}")
        return answer

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.client.http.request(method, url, **kwargs)
        response.raise_for_status()
        return response.json()


@asynccontextmanager
async def scene(env: Mapping[str, str]) -> AsyncIterator[Scene | None]:
    """The scene, or None (having said why) when the stack runs no receiver; the receiver
    behaves well again afterwards, whatever happened."""
    if RECEIVER_URL not in env:
        say(f"  no webhook receiver on this stack ({RECEIVER_URL} unset): nothing to show")
        yield None
        return
    async with SagaClient(SystemUrls.from_env(env)) as client:
        shown = Scene(client, env)
        try:
            yield shown
        finally:
            await shown.behave()


def show(notification: dict[str, Any]) -> None:
    table(
        [
            [
                notification["event_type"],
                notification["customer_id"],
                notification["status"],
                str(notification["attempts"]),
                notification["last_error"] or "-",
            ]
        ],
        ["notification of", "customer", "status", "attempts", "last error"],
    )
    say(f'    "{notification["text"]}"')


def show_posts(posts: dict[str, Any], key: str) -> None:
    say(
        f"  the receiver, by its Idempotency-Key {short(key)}... (the event id): "
        f"{posts['posts']} post(s), {posts['refused']} refused, taken: {posts['taken']}, "
        f"{posts['duplicates']} recognised as a copy"
    )


async def delivered(env: Mapping[str, str]) -> None:
    async with scene(env) as shown:
        if shown is None:
            return
        order = await shown.completed_order("ivan")
        notification = await shown.delivered(order["order_id"])
        show(notification)
        show_posts(await shown.received(notification["event_id"]), notification["event_id"])


async def retried(env: Mapping[str, str]) -> None:
    async with scene(env) as shown:
        if shown is None:
            return
        await shown.behave(always_fail=True)
        say("  the receiver refuses every post (HTTP 503) for now")
        order = await shown.completed_order("judy")

        async def refused_twice() -> dict[str, Any] | None:
            found = await shown.notification(order["order_id"])
            return found if found and found["attempts"] >= 2 else None

        show(await wait_for("two refused attempts", refused_twice, WAIT_S))
        say("  still pending: the deliverer tries again, each time after a longer pause")
        await shown.behave()
        say("  the receiver is mended")
        notification = await shown.delivered(order["order_id"])
        show(notification)
        show_posts(await shown.received(notification["event_id"]), notification["event_id"])


async def duplicate(env: Mapping[str, str]) -> None:
    async with scene(env) as shown:
        if shown is None:
            return
        timeout = float(
            env.get("SAGAKIT_NOTIFICATION_TIMEOUT_SECONDS")
            or NotificationSettings.model_fields["notification_timeout_seconds"].default
        )
        await shown.behave(slow_first=timeout + 1)
        say(
            f"  the receiver takes a notification's first post but answers after "
            f"{timeout + 1:.0f} s, past the deliverer's {timeout:.0f} s: the answer is lost"
        )
        order = await shown.completed_order("kim")
        notification = await shown.delivered(order["order_id"])
        show(notification)
        posts = await shown.received(notification["event_id"])
        show_posts(posts, notification["event_id"])
        say(
            "  posted again with the same Idempotency-Key, the copy was answered "
            '{"duplicate": true}: the customer was told once'
        )


SCENARIOS = [
    ("Notification: an order completed, its notification delivered to the webhook", delivered),
    ("Notification: the receiver refuses for a while, the delivery is retried", retried),
    ("Notification: an answer lost, the copy recognised by its Idempotency-Key", duplicate),
]
