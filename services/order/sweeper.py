"""The deadline sweeper: cancels the sagas that waited too long, one leader per database.

Every ``interval_s`` the leader locks the sagas past their status's deadline
(``services.order.deadlines``, measured from ``orders.updated_at``) and, in one unit of work
per batch, moves each to ``CANCELLED(timed_out)`` and emits ``OrderCancelled`` with reason
``timed_out`` through the outbox: the cancel and its announcement commit together, and the
other services compensate on that event like on any other (docs/events.md, "Deadlines").

One leader per database
    Like the outbox relay, each instance runs the platform's leader loop
    (``shared.storage.leadership``) with a key of its own; the one that holds the lock
    sweeps, the others try again every ``interval_s``. Here leadership only saves work: the sweep
    locks the sagas it cancels (``FOR UPDATE SKIP LOCKED``, the deadline checked again on the
    locked row), so two sweepers running at once, or a sweeper racing a handler that moves
    the same saga, still cancel each saga at most once and never one that just moved on.

Counting from when a leader watches
    A leader counts a saga's wait only from the moment it took the lead (on the database's
    clock), so a saga is cancelled after a whole deadline of a sweeper watching it. Without
    this, an order service back from an outage longer than a deadline would cancel at once
    every saga whose outcome is still in its own Kafka backlog: sagas that are not stuck, only
    not yet heard of. A takeover therefore lets a stuck saga wait up to twice its deadline.

Keeping the clock through errors
    An error does not start the watch again. A sweep that fails (its unit of work lost the
    database) is logged and the next one comes at its usual time, the lead kept. A lead lost
    with its lock connection is taken again after a backoff, and the watch resumes where it
    was, moved forward by the time spent without a lead (from the first failure seen to the
    lock taken again): that time is not watched, the time before it still is. Errors that
    recur faster than a deadline (a connection cut every second) therefore only stretch the
    timeouts by the outages themselves, where restarting the watch on each would postpone
    every timeout for as long as they recur; a long database outage still counts for
    nothing, as the backlog it leaves behind is not yet heard of.

Deciding as of what the service has read
    A deadline is about the other services: no outcome came. But the order service only knows
    what its own consumer group has read, and under load or after an outage of its own (a
    broker, the database) its backlog may hold the very outcomes a sweep would count as
    missing: ``make chaos`` cancelled sagas whose parcel left a moment later (each then
    ``COMPLETED`` after all, its customer told of both ends), and its smoke test beside two
    CPU burners timed out 2 and 76 sagas in runs whose every invariant held. So with a
    ``ReadHorizon`` (the order service always has one), each sweep is measured as of the
    group's read horizon: the latest moment by which the group had read everything its topics
    held (``shared.consuming.horizon``). A saga waited past its deadline only if it did so before
    that moment, with every event written before it read. While the group has read past no
    moment yet (a leader's first sweep, a long backlog) or Kafka cannot be asked, the sweep
    is held (counted in ``sagakit_deadline_sweeps_held_total``); how far the horizon trails
    the database's clock is ``sagakit_deadline_sweeper_horizon_lag_seconds``. A group that
    keeps up trails by about a sweep interval. Each sweep also writes the moment it sweeps as
    of to ``deadline_clock``: the stuck listing, its gauge and the bulk cancel judge
    deadlines as of it too, so that what an operator sees and cancels as stuck is what the
    sweeper would cancel.

A saga that completed, or was cancelled for a reason of its own, is never touched: only the
non-terminal statuses have deadlines, and ``Saga.time_out`` refuses a terminal saga.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import asyncpg
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError

from services.events import OrderCancelled
from services.order import store
from services.order.deadlines import Deadlines
from services.order.model import CancelReason, OrderStatus, Saga
from shared.consuming.horizon import ReadHorizon
from shared.observability.metrics import Metric, counter, gauge
from shared.storage.db import UnitOfWork, UnitOfWorkFactory
from shared.storage.leadership import DATABASE_ERRORS, LeaderLoop, lock_key

__all__ = ["LOCK_KEY", "DeadlineSweeper", "time_out"]

log = logging.getLogger(__name__)

PRODUCER = "order"

# Scoped to the order database, like the relay's key; a different name, so the two leaders
# are elected independently.
LOCK_KEY: Final = lock_key("sagakit.order.deadline-sweeper")

# Losing the database through asyncpg (the lock connection) or SQLAlchemy (the sweeps).
_DATABASE_ERRORS = (*DATABASE_ERRORS, DBAPIError)


class DeadlineSweeper:
    """Cancels overdue sagas while it leads; a component of the order service."""

    def __init__(
        self,
        units: UnitOfWorkFactory,
        database_url: str,
        deadlines: Deadlines,
        *,
        interval_s: float = 5.0,
        batch_size: int = 200,
        lock_key: int = LOCK_KEY,
        horizon: ReadHorizon | None = None,
    ) -> None:
        if interval_s <= 0 or batch_size < 1:
            raise ValueError("the sweep interval must be positive and the batch at least 1")
        self._units = units
        self._deadlines = deadlines
        self._horizon = horizon
        self._interval = interval_s
        self._batch_size = batch_size
        self._leadership = LeaderLoop(
            database_url,
            self._lead,
            lock_key=lock_key,
            name="deadline-sweeper",
            standby_s=interval_s,
            errors=_DATABASE_ERRORS,
        )
        self._stopping = self._leadership.stopping
        self._watching_since: datetime | None = None
        # The watch of a lead lost to an error, and when (monotonic) the loss was first seen.
        self._interrupted: tuple[datetime, float] | None = None
        self.timed_out: Counter[OrderStatus] = Counter()
        """The sagas this instance cancelled, by the status they were stuck in."""
        self.held = 0
        """Sweeps this instance held: its group had read past no moment yet, or Kafka could
        not say how far it had read."""
        self.horizon_lag_s: float | None = None
        """How far the read horizon trailed the database's clock at the last sweep."""

    @property
    def is_leader(self) -> bool:
        """Whether this instance holds the lock and sweeps (the others stand by)."""
        return self._leadership.is_leader

    async def start(self) -> None:
        """Start sweeping in the background; returns at once."""
        self._leadership.start()

    async def stop(self) -> None:
        """Finish the sweep in hand and give up the lead."""
        await self._leadership.stop(30)
        if self._horizon is not None:
            await self._horizon.close()

    async def sweep(self, *, as_of: datetime | None = None) -> int:
        """Cancel every saga overdue as of ``as_of`` (the database's now by default), batch by
        batch; returns how many were cancelled.

        Called by hand (not leading), it counts every wait from its start.
        """
        total = 0
        while not self._stopping.is_set():
            cancelled = await self._sweep_batch(as_of)
            total += cancelled
            if cancelled < self._batch_size:
                break
        return total

    async def _sweep_batch(self, as_of: datetime | None) -> int:
        async with self._units() as uow:
            overdue = await store.lock_overdue(
                uow.session,
                self._deadlines,
                limit=self._batch_size,
                watched_since=self._watching_since,
                as_of=as_of,
            )
            sagas = time_out(uow, overdue)
            stuck_in = [order.status for order in overdue if order.order_id in sagas]
            await store.save_sagas(uow.session, sagas)
            await uow.commit()
        self.timed_out.update(stuck_in)
        if sagas:
            shown = ", ".join(list(sagas)[:10]) + (", ..." if len(sagas) > 10 else "")
            log.info("deadline sweeper: cancelled %d overdue saga(s): %s", len(sagas), shown)
        return len(sagas)

    def metrics(self) -> list[Metric]:
        waited = (OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.RESERVED)
        return [
            counter(
                "sagakit_sagas_timed_out",
                "sagas cancelled by the deadline sweeper, by the status they waited in",
                ("status",),
                {(status.value,): self.timed_out[status] for status in waited},
            ),
            gauge(
                "sagakit_deadline_sweeper_leader",
                "1 while this instance's sweeper leads",
                (),
                {(): int(self.is_leader)},
            ),
            counter(
                "sagakit_deadline_sweeps_held",
                "sweeps held because the order group had read past no moment yet, or Kafka "
                "could not say how far it had read",
                (),
                {(): self.held},
            ),
            gauge(
                "sagakit_deadline_sweeper_horizon_lag_seconds",
                "how far the order group's read horizon, as of which the leader sweeps, "
                "trailed the database's clock at its last sweep",
                (),
                {(): self.horizon_lag_s}
                if self.is_leader and self.horizon_lag_s is not None
                else {},
            ),
        ]

    async def _lead(self, connection: asyncpg.Connection) -> None:
        """While leading: a sweep every interval, watching from when the lead was taken."""
        self._watching_since = self._resumed_watch(await connection.fetchval("SELECT now()"))
        log.info("deadline sweeper: leading")
        try:
            while not self._stopping.is_set():
                # Still holding the lock means still having its connection.
                now = await connection.fetchval("SELECT now()")
                await self._sweep_on_schedule(now)
                await self._leadership.sleep(self._interval)
        except BaseException:
            self._interrupted = (self._watching_since, time.monotonic())
            raise
        finally:
            self._watching_since = None

    def _resumed_watch(self, now: datetime) -> datetime:
        """Where the watch starts on taking the lead: now, or where an error interrupted it,
        moved forward by the time without a lead (module docstring)."""
        interrupted, self._interrupted = self._interrupted, None
        if interrupted is None:
            return now
        since, lost_at = interrupted
        return min(now, since + timedelta(seconds=time.monotonic() - lost_at))

    async def _sweep_on_schedule(self, now: datetime) -> None:
        """A sweep as of the read horizon (module docstring). One whose database work fails
        is logged, and the next comes on schedule."""
        as_of = None
        if self._horizon is not None:
            try:
                as_of = await self._horizon.advance(now)
            except (KafkaError, OSError, TimeoutError) as error:
                log.warning("deadline sweeper: cannot read the order group's offsets (%r)", error)
            if as_of is None:
                self.held += 1
                return
            self.horizon_lag_s = max(0.0, (now - as_of).total_seconds())
        try:
            # The stuck listing and the bulk cancel judge deadlines as of the same moment.
            async with self._units() as uow:
                await store.set_deadline_clock(uow.session, now if as_of is None else as_of)
                await uow.commit()
            await self.sweep(as_of=as_of)
        except _DATABASE_ERRORS as error:
            log.warning(
                "deadline sweeper: a sweep failed (%r), next in %.1f s", error, self._interval
            )


def time_out(uow: UnitOfWork, locked: Iterable[store.Order]) -> dict[str, Saga]:
    """Cancel each of the ``locked`` sagas as timed out and emit its ``OrderCancelled``
    (reason ``timed_out``, on which the other services compensate) through ``uow``'s outbox;
    the sagas to save. A saga that already ended is left out (``Saga.time_out``): the
    sweeper's query never selects one, a bulk cancel (``services.order.bulk``) may meet one."""
    sagas: dict[str, Saga] = {}
    for order in locked:
        saga = order.saga
        if not saga.time_out():
            continue
        sagas[order.order_id] = saga
        uow.emit(
            OrderCancelled(
                order_id=order.order_id,
                correlation_id=order.order_id,
                # No event caused it: the absence of one did.
                causation_id=None,
                producer=PRODUCER,
                reason=CancelReason.timed_out.value,
            )
        )
    return sagas
