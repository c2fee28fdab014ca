"""The dead-letter index's store: its rows in the order database (``store.dead_letter_index``)."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.structs import TopicPartition

from services.order import store
from shared.ops.dead_letter_index import IndexedDeadLetter
from shared.storage.db import UnitOfWorkFactory

__all__ = ["DeadLetterRows"]


class DeadLetterRows:
    """``shared.ops.dead_letter_index.DeadLetterStore`` on the order database."""

    def __init__(self, units: UnitOfWorkFactory) -> None:
        self._units = units

    async def last_rows(self, topics: Sequence[str]) -> dict[TopicPartition, IndexedDeadLetter]:
        async with self._units() as uow:
            found = await store.last_dead_letters(uow.session, topics)
        return {
            TopicPartition(row["topic"], row["kafka_partition"]): IndexedDeadLetter(
                topic=row["topic"],
                partition=row["kafka_partition"],
                offset=row["kafka_offset"],
                entity_key=row["order_id"],
                dead_lettered_at=row["dead_lettered_at"],
                consumer_group=row["consumer_group"],
                error_type=row["error_type"],
            )
            for row in found
        }

    async def add(self, letters: Sequence[IndexedDeadLetter]) -> None:
        rows = [
            {
                "topic": letter.topic,
                "kafka_partition": letter.partition,
                "kafka_offset": letter.offset,
                "order_id": letter.entity_key,
                "dead_lettered_at": letter.dead_lettered_at,
                "consumer_group": letter.consumer_group,
                "error_type": letter.error_type,
            }
            for letter in letters
        ]
        if not rows:
            return
        async with self._units() as uow:
            await store.add_dead_letters(uow.session, rows)
            await uow.commit()

    async def forget(self, partition: TopicPartition, *, before: int | None = None) -> None:
        async with self._units() as uow:
            await store.forget_dead_letters(
                uow.session, partition.topic, partition.partition, before=before
            )
            await uow.commit()
