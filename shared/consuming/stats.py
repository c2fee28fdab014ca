"""What became of a consumer group's records, counted for ``/metrics``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["OUTCOMES", "ConsumerStats", "Counted", "Outcome"]


class Outcome(enum.Enum):
    """What became of a record."""

    processed = "processed"
    duplicate = "duplicate"
    dead_lettered = "dead_lettered"
    abandoned = "abandoned"
    """Given up between two attempts because the partition is being released; not done."""


Counted = Literal["ok", "retried", "dead_lettered", "duplicate", "replay_skipped"]
"""What became of a consumed record, as ``/metrics`` counts it: handled at the first attempt,
handled after retries, dead-lettered, skipped as already processed, or skipped as a replayed
dead letter of another group (``shared.publishing.replay_target``)."""

OUTCOMES: Final[tuple[Counted, ...]] = (
    "ok",
    "retried",
    "dead_lettered",
    "duplicate",
    "replay_skipped",
)


@dataclass
class ConsumerStats:
    """Counters of one consumer group in this process, for ``/metrics``.

    Plain ints, added to once per record or per run: ``shared.consuming.consumer`` turns them into
    metric families when ``/metrics`` is scraped.
    """

    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0
    replay_skipped: int = 0
    """Replayed dead letters of another group, committed past without being handled."""
    commit_failures: int = 0
    rebalances: int = 0
    batches: int = 0
    """Transactions the group's committer ran for the runs of its partitions
    (``shared.consuming.committer``)."""
    batched: int = 0
    """Records handled in those runs."""
    batch_fallbacks: int = 0
    """Runs that failed together and were taken one record at a time."""
    by_topic: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per topic, records by outcome (``OUTCOMES``) and ``retries``: attempts retried."""

    def count(self, topic: str, outcome: Counted, records: int = 1) -> None:
        """``records`` of ``topic`` ended as ``outcome``."""
        self._of(topic)[outcome] += records
        if outcome == "duplicate":
            self.duplicates += records
        elif outcome == "dead_lettered":
            self.dead_lettered += records
        elif outcome == "replay_skipped":
            self.replay_skipped += records
        else:
            self.processed += records

    def count_retry(self, topic: str) -> None:
        """An attempt at a record of ``topic`` failed and will be tried again."""
        self._of(topic)["retries"] += 1
        self.retried += 1

    def _of(self, topic: str) -> dict[str, int]:
        counts = self.by_topic.get(topic)
        if counts is None:  # every outcome from zero, so that a rate() sees the first one
            counts = self.by_topic[topic] = dict.fromkeys((*OUTCOMES, "retries"), 0)
        return counts
