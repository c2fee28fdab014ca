"""A broker as ``make up KAFKA_AUTH=scram`` runs it: the platform's clients get in with the
credentials ``up`` writes to stack.env, a client without them or with a wrong password is
refused, and the error says why."""

from __future__ import annotations

import logging

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from deploy.localstack.cluster import KafkaCluster
from shared.contracts.topics import ensure_topics
from shared.publishing.producer import build_producer
from shared.settings import kafka_client_options
from tests.infra import Infrastructure
from tests.kafka_cluster import settings_for


async def test_stack_env_of_a_scram_broker_holds_the_credentials(
    scram_broker: KafkaCluster,
) -> None:
    env = scram_broker.env()
    assert env["SAGAKIT_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["SAGAKIT_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["SAGAKIT_KAFKA_SASL_USERNAME"] == "sagakit"
    assert len(env["SAGAKIT_KAFKA_SASL_PASSWORD"]) >= 24
    options = kafka_client_options(settings_for(scram_broker))
    assert options["security_protocol"] == "SASL_PLAINTEXT"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == env["SAGAKIT_KAFKA_SASL_PASSWORD"]


async def test_the_platforms_clients_produce_and_consume_with_the_credentials(
    scram_broker: KafkaCluster, infra: Infrastructure
) -> None:
    settings = settings_for(scram_broker, service_name="sasl")
    topic = infra.topic("sasl")
    assert await ensure_topics(kafka_client_options(settings), [topic], partitions=1) == [topic]
    producer = build_producer(settings)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, b"let in", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client_options(settings),
        group_id=infra.unique("sasl"),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.offset, record.value) == (sent.offset, b"let in")


@pytest.mark.parametrize("credentials", ["none", "wrong password"])
async def test_a_client_without_the_credentials_is_refused(
    scram_broker: KafkaCluster, credentials: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = scram_broker.client_options()
    if credentials == "none":
        options = {"bootstrap_servers": scram_broker.bootstrap}
    else:
        options["sasl_plain_password"] = "not-the-password"
    producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
    with caplog.at_level(logging.ERROR, logger="aiokafka"):
        try:
            with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
                await producer.start()
        finally:
            await producer.stop()
    log = scram_broker.nodes[0].log.read_text(errors="replace")
    if credentials == "none":
        # The broker expected a SASL handshake and hung up on the plain request.
        assert "Unexpected Kafka request of type METADATA during SASL handshake" in log
    else:
        # aiokafka names the cause; the broker logs the refusal.
        assert "SaslAuthenticationFailed" in caplog.text
        assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text
        assert "Failed authentication with /127.0.0.1" in log
