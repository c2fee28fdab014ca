"""One transaction at a time per consumer group, shared by the runs its partitions submit.

A run locks the rows its handlers touch (a customer's balance, a sku's stock) and holds them
until it commits. Two transactions of one group in flight at once (two partitions, or two
instances) lock overlapping rows in different orders and deadlock: tried with 500 customers
and 100 skus, most runs of payment and inventory did, and each deadlock costs PostgreSQL's
``deadlock_timeout`` (1 s) before one is aborted. So each transaction of a group first takes
the group's transaction-scoped advisory lock (``shared.consuming.group_lock``), and in one
process one task, the committer, runs the group's transactions one after the other: the runs
the partitions submit while one is under way all go into the next, each partition's records
in their order. At a few records per partition per poll (100 orders a second spread over 6
partitions of each topic) that is one transaction where there were tens.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["GroupCommitter", "RunFailed"]

Run = TypeVar("Run", bound=Sequence[object])
Handled = list[uuid.UUID]
"""The events of a run that its transaction handled (the others were processed before)."""


class RunFailed(Exception):
    """The transaction that held this run failed and rolled back. ``alone``: it held this
    run only, of one record, so it was that record's first attempt."""

    def __init__(self, error: Exception, *, alone: bool) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.alone = alone


@dataclass(frozen=True, slots=True)
class _Submission(Generic[Run]):
    run: Run
    handled: asyncio.Future[Handled]


class GroupCommitter(Generic[Run]):
    """Puts the runs submitted meanwhile into one ``transaction`` at a time."""

    def __init__(
        self,
        name: str,
        transaction: Callable[[Sequence[Run]], Awaitable[list[Handled]]],
        after_commit: Callable[[list[Handled]], Awaitable[None]],
    ) -> None:
        self._name = name
        self._transaction = transaction
        self._after_commit = after_commit
        self._submitted: list[_Submission[Run]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, run: Run) -> Handled:
        """Handle ``run`` in the group's next transaction; its events handled, or
        ``RunFailed`` when that transaction rolled back."""
        handled: asyncio.Future[Handled] = asyncio.get_running_loop().create_future()
        self._submitted.append(_Submission(run, handled))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit_submitted(), name=self._name)
        # Cancelled here (its partition was taken away mid-run), the run is dropped if its
        # transaction has not begun, and otherwise commits: its redelivery is then skipped.
        return await handled

    async def _commit_submitted(self) -> None:
        while self._submitted:
            await asyncio.sleep(0)  # the other partitions of this poll submit theirs too
            taken = [s for s in self._submitted if not s.handled.done()]
            self._submitted = []
            if not taken:
                continue
            try:
                results = await self._transaction([s.run for s in taken])
            except Exception as error:  # each run is then taken one record at a time
                alone = len(taken) == 1 and len(taken[0].run) == 1
                for submission in taken:
                    if not submission.handled.done():
                        submission.handled.set_exception(RunFailed(error, alone=alone))
                continue
            for submission, handled in zip(taken, results, strict=True):
                if not submission.handled.done():
                    submission.handled.set_result(handled)
            await self._after_commit(results)
