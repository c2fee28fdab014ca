"""How long a consumer's fetch waits for records: at once for a saga step, in hundreds for a
listener the saga does not wait for (shared.settings.ListenerSettings)."""

from __future__ import annotations

from services import declarations
from services.events import CATALOGUE, OrderCreated
from shared.consuming.consumer import ConsumerRunner
from shared.consuming.subscriptions import Subscription
from shared.contracts.topics import Topics
from shared.settings import ListenerSettings, PlatformSettings


async def _nothing(events: object, uow: object) -> None:
    pass


def test_the_consumer_asks_kafka_for_the_settings_fetch_bounds() -> None:
    settings = PlatformSettings(consumer_fetch_min_bytes=4096, consumer_fetch_max_wait_ms=40)
    runner = ConsumerRunner(
        group_id="g",
        subscriptions=[Subscription.batched(OrderCreated, _nothing)],
        settings=settings,
        units=lambda: None,  # type: ignore[arg-type, return-value]
        topics=Topics(CATALOGUE),
    )

    config = runner._consumer_config()

    assert (config["fetch_min_bytes"], config["fetch_max_wait_ms"]) == (4096, 40)


def test_only_the_services_that_emit_nothing_wait_for_records_to_come_together() -> None:
    listeners = {d.name for d in declarations() if issubclass(d.settings, ListenerSettings)}
    assert listeners == {"analytics", "notification"}
    for declaration in declarations():
        settings = declaration.settings()
        if declaration.name in listeners:
            assert settings.consumer_fetch_min_bytes == 64 * 1024
            assert settings.consumer_fetch_max_wait_ms == 250
        else:  # a saga step: its saga waits for every record it takes
            assert settings.consumer_fetch_min_bytes == 1
