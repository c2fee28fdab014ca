"""The notification service as it runs: its declaration's app on the real Kafka, PostgreSQL
and Redis, its group reading the order saga's topics, its deliverer posting to a real HTTP
receiver, its route answering."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.events import CATALOGUE, OrderCancelled, OrderCompleted, OrderCreated, OrderEvent
from services.notification import app as notification
from services.notification.receiver import Receiver
from shared.contracts.events import event_headers
from shared.contracts.topics import Topics
from tests.infra import Infrastructure
from tests.integration.test_booking_saga import WAIT_S, running, topics_ready
from tests.integration.test_notification_delivery import serving


def created(order_id: str, customer: str) -> OrderCreated:
    items = [{"sku": "BOOK", "quantity": 1, "unit_price": "5.00"}]
    return OrderCreated.first(
        order_id=order_id, producer="order", customer_id=customer, items=items, total="5.00"
    )


async def committed(infra: Infrastructure, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return offsets[tp].offset if tp in offsets else -1


async def test_the_service_tells_each_customer_once_through_the_webhook(
    infra: Infrastructure,
) -> None:
    prefix = infra.topic_prefix("notification")
    topics = Topics(CATALOGUE, prefix)
    await topics_ready(infra, topics, partitions=2)
    settings = notification.NotificationSettings(
        kafka_bootstrap=infra.kafka_bootstrap,
        redis_url=infra.redis_url,
        topic_prefix=prefix,
        topic_partitions=2,
        database_pool_size=2,
        database_max_overflow=2,
        notification_retry_base_delay_ms=20,
        notification_retry_max_delay_ms=100,
        notification_poll_interval_ms=20,
    )
    alice, bob = created("o-1", "alice"), created("o-2", "bob")
    done = OrderCompleted.caused_by(alice, producer="order", customer_id="alice", total="5.00")
    cancel = OrderCancelled.caused_by(bob, producer="order", reason="payment_declined")
    receiver = Receiver(fail_first=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    async with serving(receiver) as url:
        # Copied, not passed to the class: the database URL is read from an alias.
        database = await infra.create_database("notification")
        update = {"database_url": database, "notification_webhook_url": url}
        app = notification.service.app(settings.model_copy(update=update))
        transport = httpx.ASGITransport(app=app)
        async with (
            running(app),
            httpx.AsyncClient(transport=transport, base_url="http://n") as http,
        ):
            await producer.start()
            try:

                async def send(event: OrderEvent) -> Any:
                    topic = topics.for_event(type(event))
                    headers = list(event_headers(event))
                    key = event.order_id.encode()
                    return await producer.send_and_wait(
                        topic, event.to_json(), key, headers=headers
                    )

                for event in (alice, bob, done, cancel):
                    await send(event)
                again = await send(done)  # a copy, as a producer's retry would send it
            finally:
                await producer.stop()

            keys = {str(done.event_id), str(cancel.event_id)}
            async with asyncio.timeout(WAIT_S):
                while set(receiver.taken) != keys:  # noqa: ASYNC110  # a thread fills it
                    await asyncio.sleep(0.1)
                tp = TopicPartition(again.topic, again.partition)
                while await committed(infra, f"{prefix}notification", tp) <= again.offset:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            listed = (await http.get("/notifications", params={"customer_id": "bob"})).json()
            every = (await http.get("/notifications")).json()
            metrics = (await http.get("/metrics")).text

    assert receiver.posts() == {key: 2 for key in keys}  # each refused once, then taken
    assert receiver.duplicates == Counter()
    assert receiver.taken[str(cancel.event_id)]["customer_id"] == "bob"
    assert [(n["event_type"], n["status"], n["attempts"]) for n in listed] == [
        ("OrderCancelled", "delivered", 2)
    ]
    assert sorted(n["event_id"] for n in every) == sorted(keys)
    for outcome in ("retry", "delivered"):  # each post refused once, then taken
        sample = rf'sagakit_notification_attempts_total{{[^}}]*outcome="{outcome}"[^}}]*}} 2\.0'
        assert re.search(sample, metrics), outcome
