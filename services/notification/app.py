"""The notification service, declared: its settings, consumers, deliverer and route."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from pathlib import Path

from pydantic import Field

from services.events import CATALOGUE, OrderCancelled, OrderCompleted, OrderCreated, PaymentRefunded
from services.notification import api, handlers, store
from services.notification.delivery import DeliveryPolicy, WebhookDeliverer
from shared.app.declaration import Consumers, ServiceDeclaration
from shared.app.platform import Platform
from shared.app.service import Component
from shared.consuming.subscriptions import Subscription
from shared.publishing.purger import Purge
from shared.settings import ListenerSettings, database_url_field

__all__ = ["NotificationSettings", "service"]


class NotificationSettings(ListenerSettings):
    service_name: str = "notification"
    database_url: str = database_url_field("notification")
    # Where notifications are posted; unset, they are recorded only (status "recorded").
    notification_webhook_url: str | None = None
    notification_attempts: int = Field(default=8, ge=1)
    notification_retry_base_delay_ms: int = Field(default=1_000, ge=0)
    notification_retry_max_delay_ms: int = Field(default=300_000, ge=0)
    notification_timeout_seconds: float = Field(default=5.0, gt=0)
    notification_poll_interval_ms: int = Field(default=500, ge=10)
    # Delivered and recorded notifications, and orders' customers, older than this are
    # deleted; unset, they are kept for ever. Pending and dead notifications are never.
    notification_retention_seconds: int | None = Field(default=None, ge=1)

    def delivery_policy(self) -> DeliveryPolicy | None:
        """How the deliverer works, or None when there is no webhook to deliver to."""
        if not self.notification_webhook_url:
            return None
        return DeliveryPolicy(
            webhook_url=self.notification_webhook_url,
            attempts=self.notification_attempts,
            base_delay_ms=self.notification_retry_base_delay_ms,
            max_delay_ms=self.notification_retry_max_delay_ms,
            timeout_s=self.notification_timeout_seconds,
            poll_interval_s=self.notification_poll_interval_ms / 1000,
        )


def consumers(platform: Platform[NotificationSettings]) -> Consumers:
    webhook = platform.settings.delivery_policy() is not None
    notify = partial(handlers.notify, webhook=webhook)
    return {
        "notification": [
            Subscription.batched(OrderCreated, partial(handlers.learn_customers, webhook=webhook)),
            Subscription.batched(OrderCompleted, notify),
            Subscription.batched(OrderCancelled, notify),
            Subscription.batched(PaymentRefunded, notify),
        ]
    }


def components(platform: Platform[NotificationSettings]) -> list[Component]:
    policy = platform.settings.delivery_policy()
    return [] if policy is None else [WebhookDeliverer(platform.units, policy)]


def purges(platform: Platform[NotificationSettings]) -> list[Purge]:
    """The notifications' retention, when set, run by the platform's purger."""
    seconds = platform.settings.notification_retention_seconds
    if seconds is None:
        return []
    window = timedelta(seconds=seconds)
    return [Purge(store.NOTIFICATIONS_PURGE, window), Purge(store.ORDER_CUSTOMERS_PURGE, window)]


service = ServiceDeclaration(
    name="notification",
    settings=NotificationSettings,
    description="Tells customers of their orders' ends and refunds, once per event, by webhook.",
    port=8006,
    migrations=Path(__file__).with_name("migrations"),
    catalogue=CATALOGUE,
    consumers=consumers,
    components=components,
    purges=purges,
    routers=lambda platform: [api.router(platform.units)],
    admin_routers=lambda platform: [api.admin_router(platform.units)],
)
