"""Bulk actions: a group of dead letters replayed, the stuck sagas cancelled; counted first,
then carried out paced, resumable and idempotent.

Counted first
    ``preview_replay`` and ``preview_cancel`` say how many items a selection holds now and
    which sagas (order ids) they belong to, changing nothing. ``start_replay`` and
    ``start_cancel`` select again and write what they selected: one ``bulk_actions`` row and
    one ``bulk_action_items`` row per item, in one transaction. Given the count the operator
    confirmed (``expected``), a start whose selection no longer holds that many refuses
    (``SelectionChanged``): what is acted upon is what was shown.

Paced
    ``BulkRunner`` (a component of every order instance) takes the pending items of the
    oldest unfinished action ``batch_size`` at a time and waits between batches so that it
    does at most ``rate_per_s`` items a second: a replay of 100,000 dead letters reaches the
    consumers at that rate, not at once. One instance works an action at a time (it locks
    the action's row for each batch; the others take the next action, or wait), so the
    rate holds for the action whatever the number of instances.

Resumable
    A batch is claimed (its action's row and items locked, ``SKIP LOCKED``), done, and its
    items' outcomes written in one transaction. A
    process that dies mid-batch rolls the claim back, and the next runner (this one after
    a restart, or another instance) takes those items again.

Idempotent
    Doing an item twice changes nothing the first did not. A replayed dead letter reaches
    a group whose inbox skips an event it processed; a dead letter a bulk replay sent is
    never selected by another one (``replayed`` items are excluded), so running the same
    replay again sends nothing. A cancel locks the order and cancels it only if it is still
    stuck (``store.lock_stuck``: a saga that moved on since it was selected is left alone),
    compensated as a timeout (``sweeper.time_out``: ``OrderCancelled(timed_out)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, insert, literal, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from services.order import store
from services.order.deadlines import Deadlines
from services.order.stuck import StuckCriteria
from services.order.sweeper import time_out
from shared.observability.metrics import Metric, counter
from shared.ops.dead_letter_index import read_at
from shared.ops.replay import plan_replay, republish
from shared.storage.db import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "CANCEL_STUCK",
    "REPLAY",
    "ActionProgress",
    "BulkRunner",
    "DeadLetterGroup",
    "Preview",
    "ReplaySelection",
    "SelectionChanged",
    "action_progress",
    "dead_letter_groups",
    "list_actions",
    "preview_cancel",
    "preview_replay",
    "start_cancel",
    "start_replay",
]

log = logging.getLogger(__name__)

REPLAY = "replay"
CANCEL_STUCK = "cancel_stuck"
SHOWN_ORDERS = 100
"""How many order ids a preview lists (the count covers them all)."""

# Outcomes of one item.
REPLAYED, COVERED, REFUSED, GONE = "replayed", "covered", "refused", "gone"
CANCELLED, NOT_STUCK = "cancelled", "not_stuck"

_index = store.dead_letter_index
_items = store.bulk_action_items
_actions = store.bulk_actions


class SelectionChanged(Exception):
    """The selection holds another count than the one confirmed: show it again."""

    def __init__(self, expected: int, found: int) -> None:
        super().__init__(
            f"the selection now holds {found} item(s), not the {expected} confirmed: "
            "look at it again (a dry run) before acting"
        )
        self.expected, self.found = expected, found


@dataclass(frozen=True)
class DeadLetterGroup:
    """The dead letters of one topic that one consumer group gave up on for one error type."""

    topic: str
    consumer_group: str | None
    error_type: str | None
    count: int
    orders: int
    first_seen: datetime
    last_seen: datetime


def _not_replayed() -> ColumnElement[bool]:
    """A dead letter no bulk replay has sent: once sent it is not selected again, nor
    counted in its group (a copy that failed again is a new dead letter, at a new offset)."""
    return ~exists().where(
        _items.c.topic == _index.c.topic,
        _items.c.kafka_partition == _index.c.kafka_partition,
        _items.c.kafka_offset == _index.c.kafka_offset,
        _items.c.outcome == REPLAYED,
    )


@dataclass(frozen=True)
class ReplaySelection:
    """Which dead letters a bulk replay takes: those of ``topic`` (a dead-letter topic), of
    ``consumer_group`` and ``error_type`` when given, dead-lettered in [since, until)."""

    topic: str
    consumer_group: str | None = None
    error_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = [_index.c.topic == self.topic]
        if self.consumer_group is not None:
            found.append(_index.c.consumer_group == self.consumer_group)
        if self.error_type is not None:
            found.append(_index.c.error_type == self.error_type)
        if self.since is not None:
            found.append(_index.c.dead_lettered_at >= self.since)
        if self.until is not None:
            found.append(_index.c.dead_lettered_at < self.until)
        found.append(_not_replayed())
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(self).items()
        }


@dataclass(frozen=True)
class Preview:
    """What a bulk action would take: ``count`` items of ``orders`` sagas (the first
    ``SHOWN_ORDERS`` ids in ``order_ids``); for a replay, ``refused`` of them older than the
    inboxes' memory, which the replay refuses."""

    count: int
    orders: int
    order_ids: list[str]
    refused: int = 0


@dataclass(frozen=True)
class ActionProgress:
    """One bulk action: what it selected, and how far it is."""

    action_id: str
    kind: str
    selection: dict[str, Any]
    total: int
    created_at: datetime
    finished_at: datetime | None
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())


async def dead_letter_groups(session: AsyncConnection) -> list[DeadLetterGroup]:
    """The indexed dead letters no bulk replay has sent, by topic, consumer group and error
    type, the largest group first."""
    keys = (_index.c.topic, _index.c.consumer_group, _index.c.error_type)
    query = (
        select(
            *keys,
            func.count(),
            func.count(_index.c.order_id.distinct()),
            func.min(_index.c.dead_lettered_at),
            func.max(_index.c.dead_lettered_at),
        )
        .where(_not_replayed())
        .group_by(*keys)
        .order_by(func.count().desc(), *keys)
    )
    return [DeadLetterGroup(*row) for row in (await session.execute(query)).all()]


async def preview_replay(
    session: AsyncConnection, selection: ReplaySelection, memory: timedelta
) -> Preview:
    conditions = selection.conditions()
    old = _index.c.dead_lettered_at < func.now() - memory
    query = select(
        func.count(),
        func.count(_index.c.order_id.distinct()),
        func.count().filter(old),
    ).where(*conditions)
    count, orders, refused = (await session.execute(query)).one()
    shown = (
        select(_index.c.order_id)
        .where(*conditions, _index.c.order_id.is_not(None))
        .group_by(_index.c.order_id)
        .order_by(func.min(_index.c.dead_lettered_at), _index.c.order_id)
        .limit(SHOWN_ORDERS)
    )
    ids = list((await session.execute(shown)).scalars())
    return Preview(count, orders, ids, refused)


async def preview_cancel(session: AsyncConnection, criteria: StuckCriteria) -> Preview:
    orders = store.orders
    stuck = store.stuck_and_waiting(criteria)
    count = int((await session.execute(select(func.count()).where(stuck))).scalar_one())
    shown = (
        select(orders.c.order_id)
        .where(stuck)
        .order_by(orders.c.updated_at, orders.c.order_id)
        .limit(SHOWN_ORDERS)
    )
    ids = list((await session.execute(shown)).scalars())
    return Preview(count, count, ids)


async def start_replay(
    session: AsyncConnection, selection: ReplaySelection, *, expected: int | None = None
) -> tuple[str, int]:
    """Record a bulk replay of what ``selection`` holds now; its id and how many items.
    The caller commits."""
    order = (_index.c.dead_lettered_at, _index.c.topic, _index.c.kafka_partition)
    chosen = select(
        func.row_number().over(order_by=(*order, _index.c.kafka_offset)),
        _index.c.order_id,
        _index.c.topic,
        _index.c.kafka_partition,
        _index.c.kafka_offset,
    ).where(*selection.conditions())
    columns = ["seq", "order_id", "topic", "kafka_partition", "kafka_offset"]
    return await _start(session, REPLAY, selection.as_json(), chosen, columns, expected)


async def start_cancel(
    session: AsyncConnection, criteria: StuckCriteria, *, expected: int | None = None
) -> tuple[str, int]:
    """Record a bulk cancel of the stuck sagas that can still be cancelled now; its id and
    how many. The caller commits."""
    orders = store.orders
    chosen = select(
        func.row_number().over(order_by=(orders.c.updated_at, orders.c.order_id)),
        orders.c.order_id,
    ).where(store.stuck_and_waiting(criteria))
    return await _start(session, CANCEL_STUCK, {}, chosen, ["seq", "order_id"], expected)


async def _start(
    session: AsyncConnection,
    kind: str,
    selection: Mapping[str, Any],
    chosen: Any,
    columns: Sequence[str],
    expected: int | None,
) -> tuple[str, int]:
    action_id = str(uuid.uuid4())
    await session.execute(
        insert(_actions).values(action_id=action_id, kind=kind, selection=dict(selection), total=0)
    )
    rows = chosen.add_columns(literal(action_id).label("action_id"))
    inserted = await session.execute(insert(_items).from_select([*columns, "action_id"], rows))
    total = int(inserted.rowcount or 0)
    if expected is not None and total != expected:
        raise SelectionChanged(expected, total)
    # Nothing selected: finished as it starts.
    finished = func.clock_timestamp() if total == 0 else None
    await session.execute(
        update(_actions)
        .where(_actions.c.action_id == action_id)
        .values(total=total, finished_at=finished)
    )
    return action_id, total


async def action_progress(session: AsyncConnection, action_id: str) -> ActionProgress | None:
    found = await _progress(session, [_actions.c.action_id == action_id], limit=1)
    return found[0] if found else None


async def list_actions(session: AsyncConnection, *, limit: int = 50) -> list[ActionProgress]:
    """The newest bulk actions first."""
    return await _progress(session, [], limit=limit)


async def _progress(
    session: AsyncConnection, where: list[ColumnElement[bool]], *, limit: int
) -> list[ActionProgress]:
    query = select(_actions).where(*where).order_by(_actions.c.created_at.desc()).limit(limit)
    actions = list((await session.execute(query)).mappings())
    if not actions:
        return []
    ids = [row["action_id"] for row in actions]
    counted = (
        select(_items.c.action_id, _items.c.outcome, func.count())
        .where(_items.c.action_id.in_(ids), _items.c.outcome.is_not(None))
        .group_by(_items.c.action_id, _items.c.outcome)
    )
    outcomes: dict[str, dict[str, int]] = {}
    for action_id, outcome, n in (await session.execute(counted)).all():
        outcomes.setdefault(action_id, {})[outcome] = n
    return [
        ActionProgress(
            row["action_id"],
            row["kind"],
            row["selection"],
            row["total"],
            row["created_at"],
            row["finished_at"],
            outcomes.get(row["action_id"], {}),
        )
        for row in actions
    ]


class BulkRunner:
    """Carries out the bulk actions, oldest first, at most ``rate_per_s`` items a second;
    a component of the order service (every instance runs one; one works an action at a
    time)."""

    def __init__(
        self,
        units: UnitOfWorkFactory,
        kafka_options: Mapping[str, Any],
        inbox_memory: timedelta,
        deadlines: Deadlines,
        *,
        rate_per_s: float = 100.0,
        batch_size: int = 100,
        idle_s: float = 1.0,
    ) -> None:
        if rate_per_s <= 0 or batch_size < 1:
            raise ValueError("the rate must be positive and the batch at least 1")
        self._units = units
        self._kafka = dict(kafka_options)
        self._memory = inbox_memory
        self._deadlines = deadlines
        self._rate = rate_per_s
        self._batch = batch_size
        self._idle_s = idle_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.outcomes: Counter[tuple[str, str]] = Counter()
        """Items this instance did, by action kind and outcome."""

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the bulk runner is already started")
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="bulk-runner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 30)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def step(self) -> int:
        """Do one batch of the oldest unfinished action; how many items (0: nothing to do)."""
        async with self._units() as uow:
            session = uow.session
            pending = (
                select(_actions.c.action_id, _actions.c.kind)
                .where(_actions.c.finished_at.is_(None))
                .order_by(_actions.c.created_at)
                .limit(1)
                .with_for_update(skip_locked=True, key_share=True)
            )
            action = (await session.execute(pending)).one_or_none()
            if action is None:
                return 0
            action_id, kind = action
            claim = (
                select(_items)
                .where(_items.c.action_id == action_id, _items.c.outcome.is_(None))
                .order_by(_items.c.seq)
                .limit(self._batch)
                .with_for_update(skip_locked=True)
            )
            items = list((await session.execute(claim)).mappings())
            if not items:  # all done (or taken by another instance): on to the next
                await self._finish_if_done(session, action_id)
                await uow.commit()
                return await self.step() if await self._finished(action_id) else 0
            if kind == REPLAY:
                outcomes = await self._replay(items)
            else:
                outcomes = await self._cancel(uow, items)
            for outcome, seqs in _by_outcome(outcomes).items():
                await session.execute(
                    update(_items)
                    .where(_items.c.action_id == action_id, _items.c.seq.in_(seqs))
                    .values(outcome=outcome)
                )
            await self._finish_if_done(session, action_id)
            await uow.commit()
        self.outcomes.update((kind, outcome) for outcome in outcomes.values())
        return len(items)

    async def _replay(self, items: Sequence[RowMapping]) -> dict[int, str]:
        """Send the batch's dead letters back (``shared.ops.replay``: one copy per group and
        record, those older than the inboxes' memory refused)."""
        seq_at = {(i["topic"], i["kafka_partition"], i["kafka_offset"]): i["seq"] for i in items}
        letters = await read_at(self._kafka, list(seq_at))
        plan = plan_replay(letters, memory=self._memory)
        await republish(self._kafka, plan.send)
        outcomes = dict.fromkeys(seq_at.values(), GONE)  # not found: retention removed it
        for found, outcome in (
            *((letter, REPLAYED) for letter in plan.send),
            *((letter, COVERED) for letter in plan.repeats),
            *((letter, REFUSED) for letter, _ in plan.forgotten),
        ):
            outcomes[seq_at[(found.topic, found.partition, found.offset)]] = outcome
        return outcomes

    async def _cancel(self, uow: UnitOfWork, items: Sequence[RowMapping]) -> dict[int, str]:
        """Cancel the batch's sagas that are still stuck as timed out, in the batch's own
        transaction; one that moved on since it was selected (a replay unstuck it, it
        ended) is left alone."""
        seq_of = {i["order_id"]: i["seq"] for i in items}
        locked = await store.lock_stuck(uow.session, seq_of, StuckCriteria(self._deadlines))
        sagas = time_out(uow, locked.values())
        await store.save_sagas(uow.session, sagas)
        return {
            seq: CANCELLED if order_id in sagas else NOT_STUCK for order_id, seq in seq_of.items()
        }

    async def _finished(self, action_id: str) -> bool:
        async with self._units() as uow:
            query = select(_actions.c.finished_at).where(_actions.c.action_id == action_id)
            return (await uow.session.execute(query)).scalar_one() is not None

    @staticmethod
    async def _finish_if_done(session: AsyncConnection, action_id: str) -> None:
        left = exists().where(_items.c.action_id == action_id, _items.c.outcome.is_(None))
        await session.execute(
            update(_actions)
            .where(_actions.c.action_id == action_id, ~left)
            .values(finished_at=func.clock_timestamp())
        )

    def metrics(self) -> list[Metric]:
        return [
            counter(
                "sagakit_bulk_items",
                "Items of bulk actions this instance did, by kind and outcome",
                ("kind", "outcome"),
                {key: n for key, n in self.outcomes.items()},
            )
        ]

    async def _run(self) -> None:
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                done = await self.step()
            except Exception:
                # A runner that dies leaves the actions half done: log, wait, go on (the
                # batch rolled back and is taken again).
                log.exception("bulk runner: a batch failed, again in %.1f s", self._idle_s)
                done = 0
            # At most rate_per_s items a second: a batch of n takes at least n / rate.
            pause = done / self._rate - (time.monotonic() - began) if done else self._idle_s
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)


def _by_outcome(outcomes: Mapping[int, str]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for seq, outcome in outcomes.items():
        grouped.setdefault(outcome, []).append(seq)
    return grouped
