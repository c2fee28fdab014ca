"""What a consumer group listens to: event types, their handlers, and how they are delivered.

A service declares ``Subscription(OrderCreated, charge)``; the runner turns its subscriptions
into one ``Route`` per topic. Several subscriptions to one event type are allowed: their
handlers run one after the other, in declaration order, in one unit of work, so the event is
processed (and claimed in the inbox) once for all of them.

``Subscription.batched(OrderCreated, charge_all)`` declares a handler that takes the events
of a whole run at once (``shared.consuming.pipeline``), in offset order: it can read and lock what
they need in one statement and write in one, instead of a few round trips per event. It is
called with a list of one when records are processed one at a time, so it is the only code
path. Within a run each handler of a route takes every event before the next handler starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from shared.contracts.events import Event
from shared.contracts.topics import Topics
from shared.storage.db import UnitOfWork

__all__ = ["BatchHandler", "Delivery", "Handler", "Route", "Subscription", "routes_by_topic"]

E = TypeVar("E", bound=Event)

Handler = Callable[[E, UnitOfWork], Awaitable[None]]
"""``async def handler(event, uow) -> None``: changes state through ``uow.session`` and emits
events with ``uow.emit``; raises ``TransientError`` to be retried, ``PermanentError`` to be
dead-lettered at once."""

BatchHandler = Callable[[Sequence[E], UnitOfWork], Awaitable[None]]
"""``async def handler(events, uow) -> None``: a ``Handler`` for several events (offset order)."""

Delivery = Literal["at_least_once", "at_most_once"]
"""``at_least_once`` (the default): the offset is committed after the handler's transaction,
so a crash redelivers and the inbox skips what was done. ``at_most_once``: the offset is
committed before the handler runs, so a crash loses the event instead (kept for comparing the
two semantics, not for the saga)."""


@dataclass(frozen=True, slots=True, init=False)
class Subscription:
    """One handler for one event type. ``Subscription(OrderCreated, charge)``."""

    event_type: type[Event]
    handler: BatchHandler[Any]
    """Always takes a sequence: a per-event handler is wrapped (``one_at_a_time``)."""
    delivery: Delivery

    # A generic __init__ rather than a generic class: mypy checks that the handler takes the
    # event type, and ``Sequence[Subscription]`` still holds subscriptions of every type.
    def __init__(
        self,
        event_type: type[E],
        handler: Handler[E],
        delivery: Delivery = "at_least_once",
    ) -> None:
        self._set(event_type, one_at_a_time(handler), delivery)

    @classmethod
    def batched(
        cls,
        event_type: type[E],
        handler: BatchHandler[E],
        delivery: Delivery = "at_least_once",
    ) -> Subscription:
        """A subscription whose handler takes a run's events at once (module docstring)."""
        subscription = object.__new__(cls)
        subscription._set(event_type, handler, delivery)
        return subscription

    def _set(self, event_type: type[Event], handler: BatchHandler[Any], delivery: Delivery) -> None:
        if delivery not in ("at_least_once", "at_most_once"):
            raise ValueError(f"delivery must be at_least_once or at_most_once, not {delivery!r}")
        event_type.type_name()  # raises TypeError for Event itself or a non-concrete class
        object.__setattr__(self, "event_type", event_type)
        object.__setattr__(self, "handler", handler)
        object.__setattr__(self, "delivery", delivery)


def one_at_a_time(handler: Handler[E]) -> BatchHandler[E]:
    """A ``BatchHandler`` that calls a per-event ``handler`` for each event, in order."""

    async def each(events: Sequence[E], uow: UnitOfWork) -> None:
        for event in events:
            await handler(event, uow)

    return each


@dataclass(frozen=True, slots=True)
class Route:
    """What to do with the records of one topic."""

    topic: str
    event_type: type[Event]
    handlers: tuple[BatchHandler[Any], ...]
    delivery: Delivery

    async def handle(self, events: Sequence[Event], uow: UnitOfWork) -> None:
        """Run every handler of the route over ``events``, in declaration order."""
        for handler in self.handlers:
            await handler(events, uow)


def routes_by_topic(subscriptions: Iterable[Subscription], topics: Topics) -> dict[str, Route]:
    """One route per subscribed topic; ``ValueError`` if the subscriptions disagree."""
    routes: dict[str, Route] = {}
    for subscription in subscriptions:
        topic = topics.for_event(subscription.event_type)
        known = routes.get(topic)
        if known is None:
            routes[topic] = Route(
                topic, subscription.event_type, (subscription.handler,), subscription.delivery
            )
            continue
        if known.delivery != subscription.delivery:
            # The offset is committed per record, before or after all its handlers: one
            # record cannot be delivered both ways.
            raise ValueError(
                f"subscriptions to {subscription.event_type.type_name()} mix {known.delivery} "
                f"and {subscription.delivery}: use one delivery per event type in a group"
            )
        routes[topic] = Route(
            topic, known.event_type, (*known.handlers, subscription.handler), known.delivery
        )
    if not routes:
        raise ValueError("a consumer group needs at least one subscription")
    return routes
