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

    async def next_offsets(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        async with self._units() as uow:
            found = await store.next_dead_letter_offsets(uow.session, topics)
        return {TopicPartition(topic, partition): n for (topic, partition), n in found.items()}

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

    async def forget_before(self, partition: TopicPartition, offset: int) -> None:
        async with self._units() as uow:
            await store.forget_dead_letters_before(
                uow.session, partition.topic, partition.partition, offset
            )
            await uow.commit()
