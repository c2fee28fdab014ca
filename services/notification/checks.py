"""What ``make chaos`` (and ``sagakit verify``) checks of the notification service, once the
run's sagas have ended (``deploy.chaos.service_checks``).

**Notifications once each**: every order of the run has exactly one notification per event
its customer is told of (a completed order its OrderCompleted, and its OrderCancelled too
when the order service had announced a timeout before the completion, as its timeline shows;
a cancelled one its OrderCancelled, and its PaymentRefunded when its payment was refunded),
for that customer, none twice and none of an event the order did not have; each one
delivered when the service has a webhook (recorded only without), and then taken by the
receiver when the stack runs one (services/notification/companions.py). With a retention
window, a notification may be gone already: none missing is not asked then.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import asyncpg
import httpx

from deploy.chaos.checks import CheckResult
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.service_checks import ServiceCheck
from deploy.chaos.snapshot import Snapshot
from services.notification.companions import COMPANIONS

__all__ = ["CHECKS", "Books", "NotificationRow", "expected", "judge"]

NAME = "notifications once each"
_NOTIFICATIONS = (
    "SELECT event_id, order_id, event_type, customer_id, status FROM notifications "
    "WHERE order_id = ANY($1::text[])"
)


@dataclass(frozen=True)
class NotificationRow:
    event_id: str
    order_id: str
    event_type: str
    customer_id: str | None
    status: str


@dataclass(frozen=True)
class Books:
    """What the notification service (and the receiver, if any) hold of the run's orders."""

    rows: tuple[NotificationRow, ...]
    webhook: bool
    """Whether the service delivers (``SAGAKIT_NOTIFICATION_WEBHOOK_URL`` set)."""
    taken: frozenset[str] | None = None
    """The event ids the stack's receiver took; None when there is no receiver to ask."""
    retention: bool = False
    """Whether delivered notifications are deleted after a window."""


def expected(snapshot: Snapshot) -> dict[tuple[str, str], str]:
    """(order id, event type) -> the customer told, for every ended order of the run."""
    told: dict[tuple[str, str], str] = {}
    timeline = snapshot.timeline or {}
    for order in snapshot.orders.values():
        if order.status == "COMPLETED":
            told[(order.order_id, "OrderCompleted")] = order.customer_id
            if timeline.get((order.order_id, "OrderCancelled")):
                # Cancelled as timed out, then completed after all (its parcel had shipped):
                # both ends were announced, and the customer told of each.
                told[(order.order_id, "OrderCancelled")] = order.customer_id
        elif order.status == "CANCELLED":
            told[(order.order_id, "OrderCancelled")] = order.customer_id
            payment = snapshot.payments.get(order.order_id)
            if payment is not None and payment.status == "REFUNDED":
                told[(order.order_id, "PaymentRefunded")] = order.customer_id
    return told


def judge(snapshot: Snapshot, books: Books) -> CheckResult:
    """The check's verdict (see the module docstring); no I/O."""
    want = expected(snapshot)
    result = CheckResult(NAME, checked=len(want))
    found = Counter((row.order_id, row.event_type) for row in books.rows)
    done = "delivered" if books.webhook else "recorded"
    for (order_id, event_type), count in sorted(found.items()):
        if count > 1:
            result.violations.append(f"order {order_id}: {count} notifications of {event_type}")
        if (order_id, event_type) not in want:
            result.violations.append(f"order {order_id}: notified of {event_type}, not its end")
    if not books.retention:
        for order_id, event_type in sorted(set(want) - set(found)):
            result.violations.append(f"order {order_id}: no notification of {event_type}")
    for row in books.rows:
        customer = want.get((row.order_id, row.event_type))
        if customer is not None and row.customer_id != customer:
            result.violations.append(
                f"notification {row.event_id} of order {row.order_id}: customer "
                f"{row.customer_id}, the order's is {customer}"
            )
        if row.status != done:
            result.violations.append(
                f"notification {row.event_id} ({row.event_type} of {row.order_id}) {row.status}"
            )
        elif books.taken is not None and books.webhook and row.event_id not in books.taken:
            result.violations.append(
                f"notification {row.event_id} delivered, but the receiver never took it"
            )
    return result


async def read(endpoints: Endpoints, snapshot: Snapshot) -> Books | None:
    """The notifications of the run's orders, from the service's database; what the
    receiver took, when the stack runs one. None without the database's address."""
    if "SAGAKIT_NOTIFICATION_DATABASE_URL" not in endpoints.env:
        return None
    connection = await asyncpg.connect(endpoints.database_dsn("notification"), timeout=10)
    try:
        rows = await connection.fetch(_NOTIFICATIONS, list(snapshot.orders))
    finally:
        await connection.close()
    env = endpoints.env
    return Books(
        rows=tuple(NotificationRow(**dict(row)) for row in rows),
        webhook=bool(env.get("SAGAKIT_NOTIFICATION_WEBHOOK_URL")),
        taken=await _taken(env.get(COMPANIONS[0].url_var)),
        retention=bool(env.get("SAGAKIT_NOTIFICATION_RETENTION_SECONDS")),
    )


async def _taken(receiver: str | None) -> frozenset[str] | None:
    if not receiver:
        return None
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{receiver}/received")
    answer.raise_for_status()
    return frozenset(str(body["notification_id"]) for body in answer.json()["taken"])


CHECKS = [ServiceCheck(NAME, read, judge)]
