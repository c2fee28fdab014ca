"""The platform's producer, against a real Kafka broker."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.codec import has_lz4

from shared.contracts.topics import ensure_topics
from shared.publishing.producer import build_producer
from shared.settings import PlatformSettings
from tests.infra import Infrastructure


def settings(bootstrap: str, compression: str = "none") -> PlatformSettings:
    return PlatformSettings(
        kafka_bootstrap=bootstrap, kafka_compression=compression, service_name="test-producer"
    )


async def test_the_producer_waits_for_every_replica_and_is_idempotent() -> None:
    producer = build_producer(settings("127.0.0.1:9"))
    # aiokafka exposes no getter for these: read where it keeps them (0.14).
    assert producer._sender._acks == -1
    assert producer._txn_manager is not None  # present exactly when idempotence is on
    await producer.stop()  # never started: closing must still be clean


@pytest.mark.parametrize("compression", ["none", "gzip"])
async def test_a_record_round_trips_with_its_key_and_headers(
    infra: Infrastructure, compression: str
) -> None:
    topic = infra.topic(f"producer-{compression}")
    await ensure_topics({"bootstrap_servers": infra.kafka_bootstrap}, [topic], partitions=6)
    producer = build_producer(settings(infra.kafka_bootstrap, compression))
    await producer.start()
    try:
        metadata = await producer.send_and_wait(
            topic, b'{"n": 1}', key=b"o-1", headers=[("event_type", b"OrderShipped")]
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 10
        records: list[ConsumerRecord[bytes, bytes]] = []
        while not records and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            records = [record for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()
    assert [(r.partition, r.key, r.value, list(r.headers)) for r in records] == [
        (metadata.partition, b"o-1", b'{"n": 1}', [("event_type", b"OrderShipped")])
    ]


@pytest.mark.skipif(has_lz4(), reason="the compression extra is installed here")
async def test_a_missing_codec_names_the_package_to_install() -> None:
    with pytest.raises(RuntimeError, match=r"pip install 'sagakit\[compression\]'"):
        build_producer(settings("127.0.0.1:9", "lz4"))
