"""The notification service's retention: delivered and recorded notifications, and orders'
customers, older than SAGAKIT_NOTIFICATION_RETENTION_SECONDS go; pending and dead ones stay."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from services.events import OrderCompleted, OrderCreated
from services.notification import app as notification
from services.notification.app import NotificationSettings
from shared.app.platform import Platform
from shared.storage.db import asyncpg_dsn
from shared.testing.harness import Harness
from tests.infra import Infrastructure

pytestmark = pytest.mark.integration


def test_without_a_window_nothing_is_purged_and_with_one_both_tables_are() -> None:
    assert notification.purges(_platform(NotificationSettings())) == []
    window = NotificationSettings(notification_retention_seconds=60)
    purges = notification.purges(_platform(window))
    assert [(p.table, p.older_than) for p in purges] == [
        ("notifications", timedelta(seconds=60)),
        ("order_customers", timedelta(seconds=60)),
    ]


async def test_only_finished_notifications_and_old_customers_are_deleted(
    infra: Infrastructure,
) -> None:
    async with Harness(notification.service, postgres_url=infra.postgres_url) as saga:
        items = [{"sku": "BOOK", "quantity": 1, "unit_price": "1.00"}]
        for order_id in ("o-1", "o-2", "o-3", "o-4", "o-5"):
            await saga.publish(
                OrderCreated.first(
                    order_id=order_id, producer="o", customer_id="c", items=items, total="1.00"
                ),
                OrderCompleted.first(order_id=order_id, producer="o", customer_id="c", total="1"),
            )
        await saga.settle()
        url = saga.platform("notification").settings.database_url
        connection: asyncpg.Connection = await asyncpg.connect(asyncpg_dsn(url))
        try:
            # All recorded (no webhook); o-5 stays young; o-2 to o-4 are still on their way.
            await connection.execute(
                "UPDATE notifications SET created_at = now() - interval '2 hours', "
                "status = CASE order_id WHEN 'o-2' THEN 'delivered' WHEN 'o-3' THEN 'pending' "
                "WHEN 'o-4' THEN 'dead' ELSE status END WHERE order_id <> 'o-5'"
            )
            await connection.execute(
                "UPDATE order_customers SET created_at = now() - interval '2 hours' "
                "WHERE order_id <> 'o-5'"
            )
            settings = NotificationSettings(notification_retention_seconds=3600)
            for purge in notification.purges(_platform(settings)):
                await purge.statement.run(connection, purge.older_than, 100)
            kept = await connection.fetch("SELECT order_id, status FROM notifications")
            customers = await connection.fetch("SELECT order_id FROM order_customers")
        finally:
            await connection.close()

    assert sorted((row["order_id"], row["status"]) for row in kept) == [
        ("o-3", "pending"),
        ("o-4", "dead"),
        ("o-5", "recorded"),
    ]
    assert [row["order_id"] for row in customers] == ["o-5"]


def _platform(settings: NotificationSettings) -> Platform[NotificationSettings]:
    service = notification.service
    return Platform.configure(settings, service.catalogue, service.fault_kinds)
