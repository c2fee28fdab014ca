"""The dead-letter index (shared.dead_letter_index) against a real Kafka broker."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

from shared.dead_letter_index import DeadLetterIndex
from shared.topics import Topics, ensure_topics
from tests.infra import Infrastructure


def options(infra: Infrastructure) -> dict[str, Any]:
    return {"bootstrap_servers": infra.kafka_bootstrap}


async def write(infra: Infrastructure, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            headers = [("dlq.original.topic", topic.removesuffix("-dlq").encode())]
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_the_index_counts_new_dead_letters_once_and_knows_their_orders(
    infra: Infrastructure,
) -> None:
    first, second = (Topics.dlq(infra.topic(label)) for label in ("index-a", "index-b"))
    missing = Topics.dlq(infra.topic("index-never-created"))
    await ensure_topics(options(infra), [first, second], partitions=3)
    index = DeadLetterIndex(options(infra), [first, second, missing], min_interval_s=0)

    await index.refresh()
    assert index.counts() == {first: 0, second: 0, missing: 0}

    await write(infra, first, [(b"order-1", b"not an event"), (b"order-2", b"{}")])
    await write(infra, second, [(b"order-1", b"x")])
    await index.refresh()
    await index.refresh()  # nothing new: nothing counted twice

    assert index.counts() == {first: 2, second: 1, missing: 0}
    assert index.topics_by_order() == {"order-1": {first, second}, "order-2": {first}}
    letters = index.of_order("order-1")
    assert [letter.topic for letter in letters] == [first, second]
    assert letters[0].dlq_headers == {"dlq.original.topic": first.removesuffix("-dlq")}
    assert isinstance(letters[0].event(), str)  # poison bytes: why they are not an event
    found = index.find(first, letters[0].partition, letters[0].offset)
    assert found == letters[0]


async def test_a_refresh_within_the_interval_reads_nothing(infra: Infrastructure) -> None:
    topic = Topics.dlq(infra.topic("index-interval"))
    await ensure_topics(options(infra), [topic], partitions=1)
    index = DeadLetterIndex(options(infra), [topic], min_interval_s=60)
    await index.refresh()
    await write(infra, topic, [(b"order-3", b"x")])
    await index.refresh()
    assert index.counts() == {topic: 0}
