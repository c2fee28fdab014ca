"""Handing the idempotent producer one closed batch for one partition, and undoing its
sequence numbers when the batch fails: the one way the relay and the dead-letter queue send.

Why the sequence numbers
    The idempotent producer numbers each partition's records, and the broker refuses a batch
    whose first number does not follow on from the last it stored
    (``OutOfOrderSequenceNumber``). aiokafka numbers a batch's records as the batch leaves its
    queue (also when it leaves because it expired waiting for a leader) and, unlike Kafka's
    Java producer, does not take the numbers back when the batch then fails: the broker, which
    wrote nothing, then refuses every later batch of that partition for as long as the
    producer lives. Every send here gives a failed batch's numbers back, so that the next
    batch follows on from what the broker really stored.

Why one closed batch at a time per partition
    The numbers can only be given back when nothing else of the partition was numbered
    meanwhile: the counter must have moved by exactly the failed batch. So a batch is closed
    before it is queued (no ``send`` can slip a record into it), and each partition has at
    most one batch of ours in flight: the relay keeps that rule for its partitions
    (``shared.publishing.outbox_sending``), and ``send_alone`` keeps it, per producer, for records
    that several tasks may send to one partition at once (dead letters of many consumer
    partitions, and the relay's own, to one ``-dlq`` partition).

A record's partition is computed as the producer would (murmur2 of the key over the topic's
partitions), so that the batch goes where ``send`` would have put the record.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata, TopicPartition

__all__ = ["choose_partition", "partition_for", "send_alone", "submit_batch"]

log = logging.getLogger(__name__)

_partitioner = DefaultPartitioner()

# One lock per partition per producer, for send_alone: its batches follow one another.
_turns: weakref.WeakKeyDictionary[Any, dict[TopicPartition, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


async def partition_for(producer: Any, topic: str, key: bytes | None) -> TopicPartition:
    """The partition ``producer.send`` would choose for ``key`` on ``topic``."""
    return choose_partition(topic, key, sorted(await producer.partitions_for(topic)))


def choose_partition(topic: str, key: bytes | None, partitions: list[int]) -> TopicPartition:
    """``partition_for`` when the topic's (sorted) partitions are known already."""
    return TopicPartition(topic, _partitioner(key, partitions, partitions))


async def submit_batch(
    producer: Any, builder: Any, partition: TopicPartition, records: int, *, writer: str
) -> asyncio.Future[RecordMetadata]:
    """Close ``builder`` (``records`` records) and queue it for ``partition``; its future says
    whether Kafka stored it. Should it fail, its sequence numbers are given back."""
    builder.close()  # so that no send() of the same partition can slip a record into it
    numbers = _SequenceNumbers.of(producer, partition)
    future: asyncio.Future[RecordMetadata] = await producer.send_batch(
        builder, partition.topic, partition=partition.partition
    )

    def on_done(done: asyncio.Future[RecordMetadata]) -> None:
        if done.cancelled() or done.exception() is None:
            return
        if numbers is not None and not numbers.give_back(records):
            log.error(
                "%s: a batch for %s failed, and its sequence numbers could not be given back "
                "(the partition had another writer meanwhile): Kafka may refuse this "
                "partition's next batches as out of order until the producer restarts",
                writer,
                partition,
            )

    future.add_done_callback(on_done)
    return future


async def send_alone(
    producer: Any,
    topic: str,
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    writer: str,
) -> asyncio.Future[RecordMetadata]:
    """Queue one record as a batch of its own, after the previous one of its partition sent
    this way has been answered; return its future (shield it when waiting with a timeout:
    the batch stays queued either way).
    """
    partition = await partition_for(producer, topic, key)
    turn = _turns.setdefault(producer, {}).setdefault(partition, asyncio.Lock())
    await turn.acquire()
    try:
        builder = producer.create_batch()
        builder.append(key=key, value=value, timestamp=None, headers=list(headers))
        future = await submit_batch(producer, builder, partition, 1, writer=writer)
    except BaseException:
        turn.release()
        raise
    future.add_done_callback(lambda _: turn.release())
    return future


@dataclass(slots=True)
class _SequenceNumbers:
    """The idempotent producer's record numbering of one partition, around one batch.

    Reaches into aiokafka (0.14) internals: there is no public way to do this.
    """

    manager: Any
    partition: TopicPartition
    before: int

    @classmethod
    def of(cls, producer: Any, partition: TopicPartition) -> _SequenceNumbers | None:
        manager = getattr(producer, "_txn_manager", None)
        if manager is None:  # not idempotent: no numbers to give back
            return None
        return cls(manager, partition, manager.sequence_number(partition))

    def give_back(self, records: int) -> bool:
        """True when the numbers are back (or were never taken); False when unsure."""
        now = self.manager.sequence_number(self.partition)
        if now == self.before:
            return True  # never numbered: failed before it left the queue
        if now != self.before + records:
            return False
        self.manager.increment_sequence_number(self.partition, -records)
        return True
