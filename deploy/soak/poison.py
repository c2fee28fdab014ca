"""Dead letters made and replayed during the run, as an operator would.

Every ``every_s`` seconds a record that is not an event goes to ``payment-processed`` (read
by several consumer groups: each dead-letters it), and the dead letters of the record before
it are replayed. Each poison record is replayed twice. A replayed copy still fails, so it is
dead-lettered again, but only by the group it was replayed to: the dead-letter topic may
grow by at most one record per copy replayed (before the fix it multiplied: every group read
every copy). The counts are kept so the verdict can check exactly that.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.ops.replay import read_dead_letters, replay_dead_letters

__all__ = ["PoisonReplays", "ReplayRound"]

log = logging.getLogger(__name__)

TOPIC = "payment-processed"
REPLAYS_PER_POISON = 2
DLQ_WAIT_S = 60.0
POLL_S = 1.0


@dataclass(frozen=True)
class ReplayRound:
    """One replay of one poison record's dead letters, and what it did to the DLQ."""

    key: str
    dead_letters_before: int
    replayed: int
    dead_letters_after: int

    @property
    def added(self) -> int:
        return self.dead_letters_after - self.dead_letters_before


@dataclass
class PoisonReplays:
    client_options: Mapping[str, Any]
    run_id: str
    every_s: float
    rounds: list[ReplayRound] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    produced: int = 0
    final: dict[str, int] = field(default_factory=dict)
    """Each poison record's dead letters once the run is over (``count_final``)."""

    @property
    def dlq_topic(self) -> str:
        return f"{TOPIC}-dlq"

    async def run(self, stop: asyncio.Event) -> None:
        """Poison and replay until ``stop`` is set; each round's failure is noted, not raised
        (a soak reports what went wrong and goes on)."""
        pending: dict[str, int] = {}  # poison key -> replays still to do
        for index in itertools.count():
            key = f"{self.run_id}-poison-{index}"
            try:
                await self._produce(key)
                for earlier in list(pending):
                    await self._replay(earlier)
                    pending[earlier] -= 1
                    if not pending[earlier]:
                        del pending[earlier]
                pending[key] = REPLAYS_PER_POISON
            except Exception as error:  # reported in the verdict, the soak goes on
                self.errors.append(f"{type(error).__name__}: {error}")
                log.warning("poison round failed: %s", error)
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
                return
            except TimeoutError:
                continue

    async def _produce(self, key: str) -> None:
        producer = AIOKafkaProducer(**self.client_options, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(TOPIC, b"this is not an event", key=key.encode())
        finally:
            await producer.stop()
        self.produced += 1

    async def _count(self, key: str) -> int:
        records = await read_dead_letters(
            self.client_options, self.dlq_topic, match=lambda r: r.key == key.encode()
        )
        return len(records)

    async def _settled_count(self, key: str, at_least: int) -> int:
        """The dead letters of ``key`` once there are ``at_least`` and no more come within a
        poll (the groups dead-letter a failing record one after the other)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DLQ_WAIT_S
        count = await self._count(key)
        while loop.time() < deadline:
            await asyncio.sleep(POLL_S)
            again = await self._count(key)
            if again >= at_least and again == count:
                return again
            count = again
        return count

    async def _replay(self, key: str) -> None:
        before = await self._settled_count(key, at_least=1)
        plan = await replay_dead_letters(
            self.client_options,
            self.dlq_topic,
            match=lambda r: r.key == key.encode(),
            # Not an event: no group ever applies it, so no age makes its replay unsafe (and
            # the run compresses the inbox's retention to seconds).
            memory=None,
            timeout_s=DLQ_WAIT_S,
        )
        after = await self._settled_count(key, at_least=before + 1)
        self.rounds.append(ReplayRound(key, before, len(plan.send), after))

    async def count_final(self) -> None:
        """Count every replayed poison record's dead letters once the system is at rest."""
        for key in {r.key for r in self.rounds}:
            self.final[key] = await self._settled_count(key, at_least=1)

    def excess(self) -> int:
        """Dead letters beyond what may be: per poison record, its first dead letters (one per
        group that read it) plus one per copy replayed."""
        first: dict[str, int] = {}
        copies: dict[str, int] = {}
        for r in self.rounds:
            first.setdefault(r.key, r.dead_letters_before)
            copies[r.key] = copies.get(r.key, 0) + r.replayed
        return sum(max(0, self.final.get(key, 0) - first[key] - copies[key]) for key in first)

    def summary(self) -> dict[str, Any]:
        worst = max((r.added - r.replayed for r in self.rounds), default=0)
        return {
            "dead_letters_beyond_copies": self.excess(),
            "poison_records": self.produced,
            "replay_rounds": len(self.rounds),
            "copies_replayed": sum(r.replayed for r in self.rounds),
            "dead_letters_added_by_replays": sum(r.added for r in self.rounds),
            "most_added_beyond_copies": worst,
            "errors": self.errors[:10],
        }
