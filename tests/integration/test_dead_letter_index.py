"""The dead-letter index (shared.ops.dead_letter_index) against a real Kafka broker, writing its
rows to a real order database; and the stuck listing and the explorer over 100,000 of them."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import TopicPartition
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE
from services.order import api, store
from services.order.dead_letter_rows import DeadLetterRows
from services.order.deadlines import Deadlines
from services.order.explorer import routes as explorer
from services.order.explorer.peers import Peers
from services.order.stuck import StuckFinder
from shared.contracts.topics import Topics, ensure_topics, existing_partitions
from shared.ops.dead_letter_index import DeadLetterIndex
from shared.ops.replay import replay_dead_letters
from shared.storage.db import UnitOfWorkFactory, make_engine
from shared.storage.migrations import upgrade_to_head
from tests.infra import Infrastructure
from tests.integration.test_consumer_support import wait_until

MIGRATIONS = Path(__file__).parents[2] / "services" / "order" / "migrations"
BULK = 100_000


def options(infra: Infrastructure) -> dict[str, Any]:
    return {"bootstrap_servers": infra.kafka_bootstrap}


@pytest.fixture(scope="module")
async def engine(infra: Infrastructure) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(await infra.create_database("order"))
    await upgrade_to_head(engine, MIGRATIONS)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, Topics(CATALOGUE))


async def write(infra: Infrastructure, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            headers = [("dlq.original.topic", topic.removesuffix("-dlq").encode())]
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_the_index_counts_new_dead_letters_once_and_stores_where_they_are(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    first, second = (Topics.dlq(infra.topic(label)) for label in ("index-a", "index-b"))
    missing = Topics.dlq(infra.topic("index-never-created"))
    await ensure_topics(options(infra), [first, second], partitions=3)
    rows = DeadLetterRows(units)
    index = DeadLetterIndex(
        options(infra), [first, second, missing], rows, CATALOGUE, min_interval_s=0
    )
    one, two = (f"order-{uuid.uuid4().hex[:8]}" for _ in range(2))

    await index.refresh()
    assert index.counts() == {first: 0, second: 0, missing: 0}

    await write(infra, first, [(one.encode(), b"not an event"), (two.encode(), b"{}")])
    await write(infra, second, [(one.encode(), b"x")])
    await index.refresh()
    await index.refresh()  # nothing new: nothing counted twice

    assert index.counts() == {first: 2, second: 1, missing: 0}
    async with units() as uow:
        assert await store.dead_letter_topics(uow.session, [one, two]) == {
            one: {first, second},
            two: {first},
        }
        positions = await store.dead_letter_positions(uow.session, one, limit=10)
    letters = await index.read(positions)
    assert [letter.topic for letter in letters] == [first, second]
    assert letters[0].dlq_headers == {"dlq.original.topic": first.removesuffix("-dlq")}
    assert isinstance(letters[0].event(), str)  # poison bytes: why they are not an event
    assert [letter.topic for letter in index.newest(first)] == [first, first]

    # A process that starts again resumes from the store: nothing is stored twice.
    again = DeadLetterIndex(options(infra), [first, second], rows, CATALOGUE, min_interval_s=0)
    await again.refresh()
    assert again.counts() == {first: 2, second: 1}
    async with units() as uow:
        assert len(await store.dead_letter_positions(uow.session, one, limit=10)) == 2


async def test_a_refresh_within_the_interval_reads_nothing(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    topic = Topics.dlq(infra.topic("index-interval"))
    await ensure_topics(options(infra), [topic], partitions=1)
    index = DeadLetterIndex(
        options(infra), [topic], DeadLetterRows(units), CATALOGUE, min_interval_s=60
    )
    await index.refresh()
    await write(infra, topic, [(b"order-3", b"x")])
    await index.refresh()
    assert index.counts() == {topic: 0}


async def test_rows_of_records_the_topic_no_longer_holds_are_dropped(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    topic = Topics.dlq(infra.topic("index-retention"))
    await ensure_topics(options(infra), [topic], partitions=1)
    order_id = f"order-{uuid.uuid4().hex[:8]}"
    index = DeadLetterIndex(
        options(infra), [topic], DeadLetterRows(units), CATALOGUE, min_interval_s=0
    )
    await write(infra, topic, [(order_id.encode(), b"x")] * 5)
    await index.refresh()

    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:  # as the topic's retention would: the first three records go
        await admin.delete_records(
            {TopicPartition(topic, 0): RecordsToDelete(3)}, timeout_ms=10_000
        )
    finally:
        await admin.close()
    await index.refresh()

    assert index.counts() == {topic: 2}
    async with units() as uow:
        positions = await store.dead_letter_positions(uow.session, order_id, limit=10)
    assert [offset for _, _, offset in positions] == [3, 4]


async def recreate(infra: Infrastructure, topic: str) -> None:
    """Delete ``topic`` and create it again, empty: its offsets start at 0 once more."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic], timeout_ms=10_000)
    finally:
        await admin.close()

    async def gone() -> bool:  # the broker deletes in the background
        return topic not in await existing_partitions(options(infra))

    await wait_until(gone, timeout_s=30, what=f"{topic} deleted")
    await ensure_topics(options(infra), [topic], partitions=1)


async def test_an_index_resumed_over_a_recreated_topic_drops_the_old_rows_and_reads_it_afresh(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    """A dead-letter topic deleted and created again (or a new Kafka cluster beside the same
    order database: ``make demo`` in a fresh clone) starts at offset 0 again. The index's
    rows of the old topic name offsets the new one reuses: a restarted order service must
    not take them for the new records, nor skip those as already indexed."""
    topic = Topics.dlq(infra.topic("index-recreated"))
    await ensure_topics(options(infra), [topic], partitions=1)
    old, new = (f"order-{uuid.uuid4().hex[:8]}" for _ in range(2))
    rows = DeadLetterRows(units)
    await write(infra, topic, [(old.encode(), b"x")])
    await DeadLetterIndex(options(infra), [topic], rows, CATALOGUE, min_interval_s=0).refresh()

    await recreate(infra, topic)
    await write(infra, topic, [(new.encode(), b"y")])
    restarted = DeadLetterIndex(options(infra), [topic], rows, CATALOGUE, min_interval_s=0)
    await restarted.refresh()

    async with units() as uow:
        assert await store.dead_letter_topics(uow.session, [old, new]) == {new: {topic}}
    assert [letter.entity_key for letter in restarted.newest(topic)] == [new]


async def test_a_running_index_reads_a_topic_recreated_under_it_afresh(
    infra: Infrastructure, units: UnitOfWorkFactory
) -> None:
    topic = Topics.dlq(infra.topic("index-recreated-live"))
    await ensure_topics(options(infra), [topic], partitions=1)
    old, new = (f"order-{uuid.uuid4().hex[:8]}" for _ in range(2))
    index = DeadLetterIndex(
        options(infra), [topic], DeadLetterRows(units), CATALOGUE, min_interval_s=0
    )
    await write(infra, topic, [(old.encode(), b"x")] * 2)
    await index.refresh()

    await recreate(infra, topic)
    await index.refresh()  # the topic now ends before where the index stood
    await write(infra, topic, [(new.encode(), b"y")])
    await index.refresh()

    assert index.counts() == {topic: 1}
    async with units() as uow:
        assert await store.dead_letter_topics(uow.session, [old, new]) == {new: {topic}}
    assert [letter.entity_key for letter in index.newest(topic)] == [new]


async def test_replaying_one_record_seeks_to_it_instead_of_reading_the_whole_dlq(
    infra: Infrastructure,
) -> None:
    original = infra.topic("seek")
    dlq = Topics.dlq(original)
    await ensure_topics(options(infra), [original, dlq], partitions=1)
    await write(infra, dlq, [(f"order-{n}".encode(), b"x") for n in range(300)])
    looked_at: list[int] = []

    def match(record: Any) -> bool:
        looked_at.append(record.offset)
        return True

    replayed = await replay_dead_letters(
        options(infra), dlq, match=match, at=(0, 150), memory=None, timeout_s=30
    )

    assert len(replayed.send) == 1
    assert looked_at == [150], "the replay read records other than the one it was sent to"
    assert await keys_in(infra, original) == [b"order-150"]


async def keys_in(infra: Infrastructure, topic: str) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [record.key for records in batch.values() for record in records]
    finally:
        await consumer.stop()


async def produce_dead_letters(infra: Infrastructure, topic: str, keys: list[str]) -> None:
    """Real dead letters, quickly: a batching producer, many sends in flight at once."""
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", linger_ms=20, max_batch_size=256_000
    )
    headers = [("dlq.original.topic", topic.removesuffix("-dlq").encode())]
    await producer.start()
    try:
        for chunk in range(0, len(keys), 5_000):
            sent = [
                await producer.send(topic, b"not an event", key=key.encode(), headers=headers)
                for key in keys[chunk : chunk + 5_000]
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_the_stuck_listing_and_the_explorer_answer_with_100_000_dead_lettered_orders(
    infra: Infrastructure, units: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    # 100,000 orders waiting, PAID and within their deadline (an hour), each with a real
    # dead letter in a real DLQ topic: stuck because of the dead letters alone.
    customer = f"bulk-{uuid.uuid4().hex[:8]}"
    keys = [f"{customer}-{n:06d}" for n in range(BULK)]
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO orders (order_id, customer_id, items, total, status, created_at,"
                " updated_at) SELECT :customer || '-' || lpad(n::text, 6, '0'), :customer,"
                " '[]', 1, 'PAID', now() - n * interval '1 ms', now()"
                " FROM generate_series(0, :bulk - 1) AS n"
            ),
            {"customer": customer, "bulk": BULK},
        )
    dlq = Topics.dlq(infra.topic("bulk"))
    await ensure_topics(options(infra), [dlq], partitions=3)
    await produce_dead_letters(infra, dlq, keys)
    index = DeadLetterIndex(
        options(infra), [dlq], DeadLetterRows(units), CATALOGUE, min_interval_s=0
    )
    for _ in range(30):  # the catch-up may take more than one refresh's time
        try:
            await index.refresh()
            break
        except TimeoutError:
            continue
    assert index.counts() == {dlq: BULK}
    # Memory: the kept records and the partitions' positions, not an entry per dead letter.
    assert index.held() <= 200 + 2 * 3

    hour = timedelta(hours=1)
    finder = StuckFinder(Deadlines(pending=hour, paid=hour, reserved=hour), index)
    ui = explorer.Explorer(
        units=units,
        finder=finder,
        dead_letters=index,
        peers=Peers({}, None),
        kafka_options=options(infra),
        group_prefix="",
        inbox_memory=timedelta(days=7),
    )
    app = FastAPI()
    app.include_router(api.router(units, finder))
    app.include_router(explorer.router(ui))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://order") as client:
        first = await client.get("/orders", params={"stuck": "true", "limit": 500})
        assert first.status_code == 200, first.text
        mine = {"stuck": "true", "customer_id": customer, "limit": 500}
        page = await client.get("/orders", params=mine)
        assert page.status_code == 200
        assert [o["order_id"] for o in page.json()] == keys[:500]  # newest first
        following = re.fullmatch(r'<(.+)>; rel="next"', page.headers["link"])
        assert following is not None
        second = await client.get(following.group(1))
        assert [o["order_id"] for o in second.json()] == keys[500:1000]

        sagas = await client.get("/ui", params={"customer_id": customer})
        assert sagas.status_code == 200
        assert f'<span class="count">{BULK}</span>' in sagas.text
        rows = re.findall(r'class="stuck-row" data-order-id="([^"]+)"', sagas.text)
        assert rows == keys[:50]
        assert f"dead-lettered in {dlq}" in sagas.text
        more = re.search(r'id="stuck-next" href="([^"]+)"', sagas.text)
        assert more is not None
        next_sagas = await client.get(more.group(1).replace("&amp;", "&"))
        assert next_sagas.status_code == 200
        next_rows = re.findall(r'class="stuck-row" data-order-id="([^"]+)"', next_sagas.text)
        assert next_rows == keys[50:100]
