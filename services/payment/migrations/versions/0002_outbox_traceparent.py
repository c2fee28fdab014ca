"""The platform's outbox gets a traceparent column (W3C trace context through Kafka).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 23:30:00.000000
"""

from collections.abc import Sequence

from shared.storage import platform_schema

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    platform_schema.upgrade_v2()


def downgrade() -> None:
    platform_schema.downgrade_v2()
