"""Notification rules: what a customer is told of an order's end or a refund, and what a
webhook's answer makes of a delivery. Pure.

One notification per customer and event: the event id names it, and is the
``Idempotency-Key`` its deliveries carry, so a receiver that sees the same key twice knows the
second request for a duplicate (a delivery is done at least once: an answer lost on the way
back is sent again).

A notification waits for its customer (``AWAITING_CUSTOMER``) when its event does not name
one and the order's ``OrderCreated`` has not been seen yet; it is then to deliver
(``PENDING``), or only recorded (``RECORDED``) when no webhook is configured. A delivery ends
``DELIVERED`` on a 2xx answer, or ``DEAD`` (dead-lettered) when the receiver refuses it for
good (a 4xx other than 408, 425 and 429) or its attempts run out.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "NotificationStatus",
    "Verdict",
    "after_attempt",
    "describe",
    "first_status",
    "judge_answer",
]


class NotificationStatus(StrEnum):
    """Where a notification stands."""

    AWAITING_CUSTOMER = "awaiting_customer"
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"
    RECORDED = "recorded"


class Verdict(StrEnum):
    """What one delivery attempt's answer says."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


# A receiver that is busy, rate-limiting or not ready yet says so with these: try again later.
_RETRYABLE_4XX = frozenset({408, 425, 429})


def first_status(*, customer_known: bool, webhook: bool) -> NotificationStatus:
    """The status a notification is recorded with."""
    if not customer_known:
        return NotificationStatus.AWAITING_CUSTOMER
    return NotificationStatus.PENDING if webhook else NotificationStatus.RECORDED


def judge_answer(status_code: int | None) -> Verdict:
    """The verdict on a webhook's HTTP status (``None``: no answer, a timeout or a refused
    connection)."""
    if status_code is None or status_code >= 500 or status_code in _RETRYABLE_4XX:
        return Verdict.RETRY
    if 200 <= status_code < 300:
        return Verdict.DELIVERED
    return Verdict.REFUSED


def after_attempt(verdict: Verdict, *, attempts: int, max_attempts: int) -> NotificationStatus:
    """A notification's status after its ``attempts``-th delivery attempt."""
    if verdict is Verdict.DELIVERED:
        return NotificationStatus.DELIVERED
    if verdict is Verdict.REFUSED or attempts >= max_attempts:
        return NotificationStatus.DEAD
    return NotificationStatus.PENDING


_TEXTS: Mapping[str, str] = {
    "OrderCompleted": "Your order {order_id} is on its way: {total} charged.",
    "OrderCancelled": "Your order {order_id} was cancelled ({reason}).",
    "PaymentRefunded": "{amount} for your order {order_id} was refunded.",
}


def describe(event_type: str, order_id: str, details: Mapping[str, str]) -> str:
    """The sentence a customer reads about ``event_type`` (a key of ``details`` that the
    sentence names and the event lacks reads as ``?``)."""
    template = _TEXTS.get(event_type, "Your order {order_id}: {event_type}.")
    return template.format_map(_Defaulted(details, order_id=order_id, event_type=event_type))


class _Defaulted(dict[str, str]):
    def __init__(self, details: Mapping[str, str], **known: str) -> None:
        super().__init__(details, **known)

    def __missing__(self, key: str) -> str:
        return "?"
