"""What a stack runs beside the notification service: the demo's webhook receiver.

The local stack, the end-to-end tests' system and the compose file run it
(``deploy.localstack.declared``) and point ``SAGAKIT_NOTIFICATION_WEBHOOK_URL`` at it, so that
notifications are delivered and ``make demo`` can show a delivery, a refused one retried and a
copy recognised (services/notification/demo.py).
"""

from __future__ import annotations

from deploy.localstack.declared import Companion
from services.notification.receiver import HOOK_PATH

__all__ = ["COMPANIONS"]

COMPANIONS = [
    Companion(
        name="notification-receiver",
        module="notification.receiver",
        settings={"SAGAKIT_NOTIFICATION_WEBHOOK_URL": "{url}" + HOOK_PATH},
    )
]
