"""The transport limit: the saga's five-hop keyed chain through the same broker, with bare
aiokafka clients that touch no database and no Redis.

One relay per hop, each its own consumer group reading hop ``i`` and producing hop ``i + 1``
with the record's key, as each service reacts to the previous one's event; a sink reads the
last hop. Keys are order ids (uuids), values are real events of the saga's types (so of the
real sizes), topics have the platform's partition count, producers are the platform's own
(``shared.publishing.producer.build_producer``) and consumers commit after each batch. What this
reaches is what Kafka and aiokafka allow on this machine; the platform's sagas per second
are read against it.

Everything runs in this one process and event loop, which is one core of the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.broker import wait_for_leaders
from bench.stats import Summary, rate, summarize
from bench.workload import UNIT_PRICE, Workload
from services.events import (
    CATALOGUE,
    InventoryReserved,
    LineItem,
    OrderCompleted,
    OrderCreated,
    OrderShipped,
    PaymentProcessed,
    PricedLineItem,
)
from services.shipping.model import HOUSE_CARRIER, tracking_id_for
from shared.contracts.events import Event, Record
from shared.contracts.topics import Topics, encode, ensure_topics
from shared.publishing.producer import build_producer
from shared.settings import PlatformSettings, kafka_client_options

__all__ = ["HOPS", "TransportResult", "run_transport", "saga_records"]

HOPS = 5
POLL_MS = 100
ASSIGNMENT_TIMEOUT_S = 30.0


def saga_records() -> list[Record]:
    """One record of each hop: OrderCreated, PaymentProcessed, InventoryReserved,
    OrderShipped, OrderCompleted, as the services would write them for a benchmark order."""
    order_id = str(uuid.uuid4())
    workload = Workload()
    customer, lines, total = workload.customer(0), workload.lines(0), workload.total(0)
    created = OrderCreated.first(
        order_id=order_id,
        producer="order",
        customer_id=customer,
        items=tuple(
            PricedLineItem(sku=s, quantity=q, unit_price=Decimal(UNIT_PRICE)) for s, q in lines
        ),
        total=total,
    )
    stock = tuple(LineItem(sku=s, quantity=q) for s, q in lines)
    paid = PaymentProcessed.caused_by(
        created, producer="payment", customer_id=customer, amount=total, items=stock
    )
    reserved = InventoryReserved.caused_by(paid, producer="inventory", items=stock)
    shipped = OrderShipped.caused_by(
        reserved,
        producer="shipping",
        tracking_id=tracking_id_for(order_id),
        carrier=HOUSE_CARRIER,
    )
    completed = OrderCompleted.caused_by(
        shipped, producer="order", customer_id=customer, total=total
    )
    events: list[Event] = [created, paid, reserved, shipped, completed]
    return [encode(event, Topics(CATALOGUE)) for event in events]


class _Chains:
    """What the injector, the relays and the sink share during one round: when each record
    left, and how long each hop and each whole chain took."""

    def __init__(self, expected: int, in_flight: int) -> None:
        self.expected = expected
        self.slots = asyncio.Semaphore(in_flight)
        self.sent: dict[tuple[int, bytes], float] = {}
        self.started: dict[bytes, float] = {}
        self.hop_ms: list[list[float]] = [[] for _ in range(HOPS)]
        self.chain_ms: list[float] = []
        self.first_start: float | None = None
        self.last_end = 0.0
        self.done = asyncio.Event()

    def starting(self, key: bytes) -> None:
        now = time.perf_counter()
        self.started[key] = now
        if self.first_start is None:
            self.first_start = now

    def leaving(self, hop: int, key: bytes) -> None:
        self.sent[(hop, key)] = time.perf_counter()

    def arrived(self, hop: int, key: bytes) -> None:
        now = time.perf_counter()
        sent = self.sent.pop((hop, key), None)
        if sent is None:
            return  # a straggler of a round that timed out
        self.hop_ms[hop - 1].append((now - sent) * 1000)
        if hop == HOPS:
            self.chain_ms.append((now - self.started.pop(key)) * 1000)
            self.last_end = now
            self.slots.release()
            if len(self.chain_ms) >= self.expected:
                self.done.set()

    @property
    def seconds(self) -> float:
        """From the first chain's start to the last one's end."""
        return self.last_end - self.first_start if self.first_start is not None else 0.0


@dataclass(frozen=True)
class TransportResult:
    chains: int
    completed: int
    in_flight: int
    partitions: int
    value_bytes: tuple[int, ...]
    seconds: float
    chain: Summary | None
    hops: tuple[Summary | None, ...]
    """Per hop, from handing the record to the producer to its reader having it."""
    unloaded_chain: Summary | None
    """One chain at a time: the latency of the transport alone, without queues."""
    unloaded_hops: tuple[Summary | None, ...]

    @property
    def chains_per_s(self) -> float | None:
        return rate(self.completed, self.seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "chains": self.chains,
            "completed": self.completed,
            "max_in_flight": self.in_flight,
            "partitions": self.partitions,
            "hops": HOPS,
            "value_bytes": list(self.value_bytes),
            "seconds": round(self.seconds, 3),
            "chains_per_s": self.chains_per_s,
            "chain_latency": self.chain.to_json() if self.chain else None,
            "hop_latency": [hop.to_json() if hop else None for hop in self.hops],
            "unloaded_chain_latency": self.unloaded_chain.to_json()
            if self.unloaded_chain
            else None,
            "unloaded_hop_latency": [hop.to_json() if hop else None for hop in self.unloaded_hops],
        }


class _Relays:
    """The topics, clients and reader tasks of one run; ``close`` removes all of them.

    ``chains`` is the round being measured: the readers report to whichever it is now.
    """

    def __init__(self, settings: PlatformSettings, run_id: str, partitions: int) -> None:
        self.settings = settings
        self.partitions = partitions
        self.topics = [f"bench-transport-{run_id}-hop{hop}" for hop in range(1, HOPS + 1)]
        self.groups = [f"bench-transport-{run_id}-reader{hop}" for hop in range(1, HOPS + 1)]
        self.records = saga_records()
        self.chains = _Chains(0, 1)
        self.consumers: list[AIOKafkaConsumer] = []
        self.producers: list[AIOKafkaProducer] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        """Create the topics and start a reader per hop, each with a producer for the next."""
        options = kafka_client_options(self.settings)
        await ensure_topics(options, self.topics, partitions=self.partitions)
        await wait_for_leaders(options, self.topics)
        for hop in range(1, HOPS + 1):
            consumer = AIOKafkaConsumer(
                self.topics[hop - 1],
                **options,
                group_id=self.groups[hop - 1],
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
            )
            await consumer.start()
            self.consumers.append(consumer)
            producer = await self.producer() if hop < HOPS else None
            self.tasks.append(asyncio.create_task(self._read(hop, consumer, producer)))
        await self._wait_for_assignments()

    async def producer(self) -> AIOKafkaProducer:
        """A started producer of the platform's kind, stopped by ``close``."""
        producer = build_producer(self.settings)
        await producer.start()
        self.producers.append(producer)
        return producer

    async def _read(
        self, hop: int, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer | None
    ) -> None:
        """Hop ``hop``'s reader: relay each record to the next hop (the last one only counts)."""
        while True:
            batches = await consumer.getmany(timeout_ms=POLL_MS)
            sends = []
            for records in batches.values():
                for record in records:
                    self.chains.arrived(hop, record.key)
                    if producer is not None:
                        sends.append(await self.send(producer, hop + 1, record.key))
            if sends:
                await asyncio.gather(*sends)
            if batches:
                await consumer.commit()

    async def send(self, producer: AIOKafkaProducer, hop: int, key: bytes) -> asyncio.Future[Any]:
        """Hand hop ``hop``'s record for ``key`` to ``producer``; the future is its ack."""
        record = self.records[hop - 1]
        self.chains.leaving(hop, key)
        future: asyncio.Future[Any] = await producer.send(
            self.topics[hop - 1], value=record.value, key=key, headers=list(record.headers)
        )
        return future

    async def round(
        self, producer: AIOKafkaProducer, count: int, in_flight: int, timeout: float
    ) -> _Chains:
        """Inject ``count`` chains, at most ``in_flight`` at a time; return the round once the
        sink has them all, or at ``timeout``."""
        chains = self.chains = _Chains(count, in_flight)
        acks = []
        for _ in range(count):
            await chains.slots.acquire()
            key = str(uuid.uuid4()).encode()
            chains.starting(key)
            acks.append(await self.send(producer, 1, key))
        await asyncio.gather(*acks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(chains.done.wait(), timeout)
        return chains

    async def _wait_for_assignments(self) -> None:
        deadline = time.monotonic() + ASSIGNMENT_TIMEOUT_S
        while any(len(c.assignment()) < self.partitions for c in self.consumers):
            if time.monotonic() > deadline:
                raise TimeoutError("the transport relays got no partitions in time")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for consumer in self.consumers:
            await consumer.stop()
        for producer in self.producers:
            await producer.stop()
        admin = AIOKafkaAdminClient(**kafka_client_options(self.settings))
        await admin.start()
        try:
            await admin.delete_topics(self.topics)
        finally:
            await admin.close()


async def run_transport(
    bootstrap: str,
    *,
    chains: int,
    in_flight: int,
    partitions: int,
    unloaded_chains: int = 200,
    warmup: int = 500,
    timeout: float = 120.0,
) -> TransportResult:
    """``unloaded_chains`` chains one at a time, then ``chains`` chains with at most
    ``in_flight`` at a time, through the five hops."""
    run_id = uuid.uuid4().hex[:8]
    settings = PlatformSettings(
        kafka_bootstrap=bootstrap, service_name="bench-transport", instance_id=run_id
    )
    relays = _Relays(settings, run_id, partitions)
    try:
        await relays.open()
        producer = await relays.producer()
        # A first round fills metadata caches and connections; it is not measured.
        await relays.round(producer, min(warmup, chains), in_flight, timeout)
        unloaded = await relays.round(producer, unloaded_chains, 1, timeout)
        loaded = await relays.round(producer, chains, in_flight, timeout)
    finally:
        await relays.close()
    return TransportResult(
        chains=chains,
        completed=len(loaded.chain_ms),
        in_flight=in_flight,
        partitions=partitions,
        value_bytes=tuple(len(record.value) for record in relays.records),
        seconds=loaded.seconds,
        chain=summarize(loaded.chain_ms),
        hops=tuple(summarize(hop) for hop in loaded.hop_ms),
        unloaded_chain=summarize(unloaded.chain_ms),
        unloaded_hops=tuple(summarize(hop) for hop in unloaded.hop_ms),
    )
