"""The unit of work, the outbox table and the relay, against real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from sqlalchemy import Column, MetaData, Table, Text, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.events import CATALOGUE, OrderCreated, OrderShipped, PricedLineItem
from shared.contracts.topics import Topics, encode, ensure_topics
from shared.observability.tracing import TraceParent
from shared.publishing.outbox import OutboxRelay
from shared.publishing.producer import build_producer
from shared.settings import PlatformSettings
from shared.storage.db import (
    UnitOfWorkFactory,
    asyncpg_dsn,
    create_platform_tables,
    encode_headers,
    make_engine,
    outbox_table,
)
from shared.storage.sql import insert_unless_present
from tests.infra import Infrastructure

# A service's own table, to show that its rows and its events commit together.
service_metadata = MetaData()
orders = Table(
    "orders",
    service_metadata,
    Column("order_id", Text, primary_key=True),
    Column("status", Text, nullable=False),
)

FAR_AWAY_S = 30.0  # a poll interval no test waits for


class Stack:
    """One test's database, topics and helpers; each test gets its own."""

    def __init__(
        self,
        url: str,
        engine: AsyncEngine,
        topics: Topics,
        producer: AIOKafkaProducer,
        bootstrap: str,
    ) -> None:
        self.url = url
        self.bootstrap = bootstrap
        self.engine = engine
        self.topics = topics
        self.producer = producer
        self.units = UnitOfWorkFactory(engine, topics)

    def relay(self, name: str, *, poll_interval_s: float = FAR_AWAY_S) -> OutboxRelay:
        return OutboxRelay(
            self.url,
            self.producer,
            poll_interval_s=poll_interval_s,
            standby_retry_s=0.2,
            ack_timeout_s=10,
            name=f"{name}-{uuid.uuid4().hex[:6]}",
        )

    async def emit_shipped(self, order_id: str, sequence: int) -> None:
        async with self.units() as uow:
            uow.emit(shipped(order_id, sequence))
            await uow.commit()

    async def unsent(self) -> int:
        async with self.engine.connect() as connection:
            query = select(func.count()).where(outbox_table.c.sent_at.is_(None))
            return int((await connection.execute(query)).scalar_one())

    async def read(self, count: int, timeout_s: float = 20.0) -> list[ConsumerRecord[bytes, bytes]]:
        return await read_back(
            self.bootstrap, self.topics.for_event(OrderShipped), count, timeout_s
        )


def shipped(order_id: str, sequence: int) -> OrderShipped:
    # The tracking id carries the emission sequence, so the order can be read back from Kafka.
    return OrderShipped.first(
        order_id=order_id, producer="test", tracking_id=str(sequence), carrier="test-post"
    )


def sequences_by_key(records: Iterable[ConsumerRecord[bytes, bytes]]) -> dict[str, list[int]]:
    by_key: dict[str, list[int]] = defaultdict(list)
    for record in records:
        assert record.key is not None and record.value is not None
        by_key[record.key.decode()].append(
            int(OrderShipped.model_validate_json(record.value).tracking_id)
        )
    return dict(by_key)


async def read_back(
    bootstrap: str, topic: str, count: int, timeout_s: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Everything on ``topic`` from the beginning, once ``count`` records arrived (or timeout)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                records.extend(batch)
        # A short grace period shows duplicates that arrive after the expected count.
        batches = await consumer.getmany(timeout_ms=300)
        for batch in batches.values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        await asyncio.sleep(0.02)


async def leader_of(relays: Sequence[OutboxRelay]) -> OutboxRelay:
    async def one_leads() -> bool:
        return sum(relay.is_leader for relay in relays) == 1

    await eventually(one_leads)
    return next(relay for relay in relays if relay.is_leader)


@pytest.fixture(scope="module")
async def producer(infra: Infrastructure) -> AsyncIterator[AIOKafkaProducer]:
    settings = PlatformSettings(kafka_bootstrap=infra.kafka_bootstrap, service_name="test-outbox")
    producer = build_producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def stack(infra: Infrastructure, producer: AIOKafkaProducer) -> AsyncIterator[Stack]:
    url = await infra.create_database("outbox")
    engine = make_engine(url)
    await create_platform_tables(engine)
    async with engine.begin() as connection:
        await connection.run_sync(service_metadata.create_all)
    topics = Topics(CATALOGUE, prefix=infra.topic_prefix("outbox"))
    await ensure_topics(
        {"bootstrap_servers": infra.kafka_bootstrap},
        [topics.for_event(OrderShipped), topics.for_event(OrderCreated)],
        partitions=6,
    )
    yield Stack(url, engine, topics, producer, infra.kafka_bootstrap)
    await engine.dispose()


async def test_state_changes_and_emitted_events_commit_together(stack: Stack) -> None:
    event = OrderCreated.first(
        order_id="o-1",
        producer="order",
        customer_id="c-1",
        items=(PricedLineItem(sku="s-1", quantity=2, unit_price="1.25"),),
        total="2.50",
    )
    async with stack.units() as uow:
        await uow.session.execute(insert(orders).values(order_id="o-1", status="PENDING"))
        uow.emit(event)
        await uow.commit()

    async with stack.engine.connect() as connection:
        assert (await connection.execute(select(orders.c.status))).scalars().all() == ["PENDING"]
        row = (await connection.execute(select(outbox_table))).one()
    expected = encode(event, stack.topics)
    assert (row.topic, row.key, row.value) == (expected.topic, expected.key, expected.value)
    assert row.headers == encode_headers(expected.headers)
    # Emitted outside any request or handler: the first span of a trace of its own.
    assert TraceParent.parse(row.traceparent) is not None
    assert row.sent_at is None


async def test_a_unit_of_work_left_without_commit_leaves_neither_state_nor_events(
    stack: Stack,
) -> None:
    with pytest.raises(RuntimeError, match="handler failed"):
        async with stack.units() as uow:
            await uow.session.execute(insert(orders).values(order_id="o-2", status="PENDING"))
            uow.emit(shipped("o-2", 1))
            raise RuntimeError("handler failed")
    async with stack.units() as uow:
        uow.emit(shipped("o-3", 1))
        # leaves the block without commit

    async with stack.engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(orders))).scalar() == 0
    assert await stack.unsent() == 0


async def test_events_of_one_unit_of_work_keep_their_emission_order(stack: Stack) -> None:
    async with stack.units() as uow:
        for sequence in range(5):
            uow.emit(shipped("o-1", sequence))
        await uow.commit()

    async with stack.engine.connect() as connection:
        values = (await connection.execute(select(outbox_table.c.value).order_by("id"))).scalars()
        tracking = [OrderShipped.model_validate_json(value).tracking_id for value in values]
    assert tracking == ["0", "1", "2", "3", "4"]


_ADD_ORDER = insert_unless_present(
    orders, ("order_id", "status"), conflict=["order_id"], returning=["order_id", "status"]
)


async def test_one_statement_writes_its_row_and_its_events_in_emission_order(
    stack: Stack,
) -> None:
    events = [shipped("o-1", sequence) for sequence in range(3)]

    rows = await stack.units.one_statement(
        _ADD_ORDER, {"order_id": "o-1", "status": "SHIPPED"}, emit=events
    )

    assert [dict(row) for row in rows] == [{"order_id": "o-1", "status": "SHIPPED"}]
    # Committed: another connection sees the row and the events, as emit would write them.
    async with stack.engine.connect() as connection:
        assert (await connection.execute(select(orders.c.status))).scalars().all() == ["SHIPPED"]
        written = (await connection.execute(select(outbox_table).order_by("id"))).all()
    assert len(written) == 3
    for row, event in zip(written, events, strict=True):
        expected = encode(event, stack.topics)
        assert (row.topic, row.key, row.value) == (expected.topic, expected.key, expected.value)
        assert row.headers == encode_headers(expected.headers)
        assert TraceParent.parse(row.traceparent) is not None
        assert row.sent_at is None
    assert written[0].created_at <= written[1].created_at <= written[2].created_at


async def test_one_statement_that_returns_no_row_emits_nothing(stack: Stack) -> None:
    await stack.units.one_statement(
        _ADD_ORDER, {"order_id": "o-1", "status": "PENDING"}, emit=[shipped("o-1", 1)]
    )

    # The same key again: the insert does nothing, so neither does the emission.
    rows = await stack.units.one_statement(
        _ADD_ORDER, {"order_id": "o-1", "status": "CHANGED"}, emit=[shipped("o-1", 2)]
    )

    assert rows == []
    async with stack.engine.connect() as connection:
        assert (await connection.execute(select(orders.c.status))).scalars().all() == ["PENDING"]
        values = (await connection.execute(select(outbox_table.c.value))).scalars().all()
    assert [OrderShipped.model_validate_json(value).tracking_id for value in values] == ["1"]


async def test_one_statement_needs_returning(stack: Stack) -> None:
    without_returning = insert_unless_present(orders, ("order_id", "status"), conflict=["order_id"])

    with pytest.raises(TypeError, match="RETURNING"):
        await stack.units.one_statement(
            without_returning, {"order_id": "o-1", "status": "PENDING"}, emit=[]
        )


@pytest.mark.parametrize("relay_here", [False, True], ids=["relay elsewhere", "relay here"])
async def test_one_statement_wakes_the_relay_long_before_its_poll_interval(
    stack: Stack, relay_here: bool
) -> None:
    relay = stack.relay("relay", poll_interval_s=FAR_AWAY_S)
    await relay.start()
    if relay_here:
        stack.units.relay = relay  # woken directly; elsewhere, by the statement's notification
    try:
        await leader_of([relay])
        # As in the notification test above: the first round may find a row unprompted,
        # the second is only published that soon if the statement woke the relay.
        for order_id in ("o-1", "o-2"):
            await stack.units.one_statement(
                _ADD_ORDER, {"order_id": order_id, "status": "SHIPPED"}, emit=[shipped(order_id, 1)]
            )
            await eventually(lambda: _is_zero(stack.unsent()), timeout_s=FAR_AWAY_S / 2)
    finally:
        await relay.stop()

    assert len(await stack.read(2)) == 2


async def test_the_relay_publishes_rows_in_order_and_marks_them_sent(stack: Stack) -> None:
    for sequence in range(30):
        await stack.emit_shipped(f"o-{sequence % 3}", sequence)
    relay = stack.relay("relay")

    await relay.start()
    try:
        records = await stack.read(30)
        await eventually(lambda: _is_zero(stack.unsent()))
    finally:
        await relay.stop()

    assert sequences_by_key(records) == {
        "o-0": list(range(0, 30, 3)),
        "o-1": list(range(1, 30, 3)),
        "o-2": list(range(2, 30, 3)),
    }
    headers = dict(records[0].headers)
    event = OrderShipped.model_validate_json(records[0].value or b"")
    assert TraceParent.parse(headers.pop("traceparent")) is not None
    assert headers == {"event_type": b"OrderShipped", "event_id": str(event.event_id).encode()}


async def test_the_relay_wakes_on_notify_long_before_its_poll_interval(stack: Stack) -> None:
    relay = stack.relay("relay", poll_interval_s=FAR_AWAY_S)
    await relay.start()
    try:
        await leader_of([relay])
        # A first row, published by whatever round comes first (the leader's first round may
        # find it without a notification); the poll after that round is FAR_AWAY_S away.
        await stack.emit_shipped("o-1", 1)
        await eventually(lambda: _is_zero(stack.unsent()), timeout_s=FAR_AWAY_S / 2)
        # The second can only be published that soon because its commit's notification woke
        # the relay: half the poll interval is the bound, not a guess at how fast it is.
        await stack.emit_shipped("o-1", 2)
        await eventually(lambda: _is_zero(stack.unsent()), timeout_s=FAR_AWAY_S / 2)
    finally:
        await relay.stop()

    assert len(await stack.read(2)) == 2


async def test_an_acknowledgement_alone_does_not_read_the_outbox_again(stack: Stack) -> None:
    # One row at a time, as at a low rate: each commit's notification reads the outbox once
    # and hands the row over; Kafka's answer marks it sent. That answer says nothing about
    # other rows (none was left behind), so it costs no read (it used to cost one: a round
    # trip for nothing, per row, in every service).
    relay = stack.relay("relay", poll_interval_s=FAR_AWAY_S)
    await relay.start()
    try:
        await leader_of([relay])
        reads_before = relay.stats.reads
        for sequence in range(10):
            await stack.emit_shipped("o-1", sequence)
            await eventually(lambda: _is_zero(stack.unsent()), timeout_s=FAR_AWAY_S / 2)
        reads = relay.stats.reads - reads_before
    finally:
        await relay.stop()

    assert relay.stats.published == 10
    # One read per commit; one more where the leader's first round came after this count.
    assert reads <= 11, f"{reads} reads of the outbox for 10 rows"


async def test_the_poll_publishes_rows_whose_notification_was_missed(stack: Stack) -> None:
    relay = stack.relay("relay", poll_interval_s=0.3)
    await relay.start()
    try:
        await leader_of([relay])
        await asyncio.sleep(0.3)
        # Written by hand, as a unit of work would, but without pg_notify.
        record = encode(shipped("o-1", 1), stack.topics)
        async with stack.engine.begin() as connection:
            await connection.execute(
                insert(outbox_table).values(
                    topic=record.topic,
                    key=record.key,
                    value=record.value,
                    headers=encode_headers(record.headers),
                )
            )
        await eventually(lambda: _is_zero(stack.unsent()), timeout_s=5)
    finally:
        await relay.stop()

    assert len(await stack.read(1)) == 1


async def test_two_relays_publish_a_thousand_events_over_fifty_keys_in_emission_order(
    stack: Stack,
) -> None:
    relays = [stack.relay("first", poll_interval_s=0.5), stack.relay("second", poll_interval_s=0.5)]
    for relay in relays:
        await relay.start()
    emitted: dict[str, list[int]] = {f"o-{key}": [] for key in range(50)}
    halfway = asyncio.Event()

    async def emitter(keys: list[str], count: int) -> None:
        # Each emitter owns its keys, so "emission order" per key is well defined even though
        # the emitters commit concurrently; transactions carry one to four events.
        sequence = 0
        while sequence < count:
            async with stack.units() as uow:
                for _ in range(1 + sequence % 4):
                    if sequence == count:
                        break
                    key = keys[sequence % len(keys)]
                    uow.emit(shipped(key, sequence))
                    emitted[key].append(sequence)
                    sequence += 1
                await uow.commit()
            if sum(map(len, emitted.values())) >= 500:
                halfway.set()

    async def hand_over() -> None:
        # Halfway through, the leader restarts (as in a rolling deploy): both relays publish.
        await halfway.wait()
        leader = await leader_of(relays)
        await leader.stop()
        await leader_of(relays)  # the standby took over
        await leader.start()

    try:
        keys = list(emitted)
        await asyncio.gather(
            hand_over(), *(emitter(keys[i : i + 10], 200) for i in range(0, 50, 10))
        )
        records = await stack.read(1000, timeout_s=30)
        await eventually(lambda: _is_zero(stack.unsent()))
    finally:
        for relay in relays:
            await relay.stop()

    assert sequences_by_key(records) == emitted
    assert len(records) == 1000
    assert [relay.stats.published > 0 for relay in relays] == [True, True]
    assert sum(relay.stats.published for relay in relays) == 1000


async def test_the_standby_publishes_the_rest_when_the_leader_stops(stack: Stack) -> None:
    relays = [stack.relay("first", poll_interval_s=0.5), stack.relay("second", poll_interval_s=0.5)]
    for relay in relays:
        await relay.start()
    try:
        leader = await leader_of(relays)
        for sequence in range(100):
            await stack.emit_shipped(f"o-{sequence % 5}", sequence)
        await eventually(lambda: _is_zero(stack.unsent()))
        await leader.stop()
        standby = await leader_of(relays)
        assert standby is not leader
        for sequence in range(100, 200):
            await stack.emit_shipped(f"o-{sequence % 5}", sequence)
        records = await stack.read(200)
    finally:
        for relay in relays:
            await relay.stop()

    assert standby.stats.published == 100
    assert sequences_by_key(records) == {f"o-{key}": list(range(key, 200, 5)) for key in range(5)}


async def test_a_leader_that_loses_its_database_connection_comes_back_and_publishes(
    stack: Stack,
) -> None:
    relay = stack.relay("relay", poll_interval_s=0.5)
    await relay.start()
    try:
        await leader_of([relay])
        await stack.emit_shipped("o-1", 1)
        await eventually(lambda: _is_zero(stack.unsent()))

        killed = await _terminate_backends(stack.url, relay_name=relay.name)
        assert killed == 1
        await stack.emit_shipped("o-1", 2)
        await eventually(lambda: _is_zero(stack.unsent()))
    finally:
        await relay.stop()

    assert relay.stats.leaderships == 2
    assert sequences_by_key(await stack.read(2)) == {"o-1": [1, 2]}


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def _terminate_backends(url: str, *, relay_name: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        killed: list[bool] = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()",
            relay_name,
        )
    finally:
        await connection.close()
    return len(killed)
