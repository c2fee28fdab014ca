"""The dead-letter index's store: its rows in the order database (``store.dead_letter_index``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiokafka.structs import TopicPartition

from services.order import store
from shared.ops.dead_letter_index import IndexedDeadLetter
from shared.storage.db import UnitOfWorkFactory

__all__ = ["DeadLetterRows"]


# The column of ``store.dead_letter_index`` that keeps each field of an ``IndexedDeadLetter``.
_COLUMNS: Final = {
    "topic": "topic",
    "partition": "kafka_partition",
    "offset": "kafka_offset",
    "entity_key": "order_id",
    "dead_lettered_at": "dead_lettered_at",
    "consumer_group": "consumer_group",
    "error_type": "error_type",
}


class DeadLetterRows:
    """``shared.ops.dead_letter_index.DeadLetterStore`` on the order database."""

    def __init__(self, units: UnitOfWorkFactory) -> None:
        self._units = units

    async def last_rows(self, topics: Sequence[str]) -> dict[TopicPartition, IndexedDeadLetter]:
        async with self._units() as uow:
            found = await store.last_dead_letters(uow.session, topics)
        letters = [
            IndexedDeadLetter(**{field: row[column] for field, column in _COLUMNS.items()})
            for row in found
        ]
        return {TopicPartition(letter.topic, letter.partition): letter for letter in letters}

    async def add(self, letters: Sequence[IndexedDeadLetter]) -> None:
        rows = [
            {column: getattr(letter, field) for field, column in _COLUMNS.items()}
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
