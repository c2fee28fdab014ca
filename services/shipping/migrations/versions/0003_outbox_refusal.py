"""The outbox's refusal column: why Kafka refused a row for good, and where it went instead.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:40:00.000000
"""

from collections.abc import Sequence

from shared.storage import platform_schema

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    platform_schema.add_refusal_v3()


def downgrade() -> None:
    platform_schema.drop_refusal_v3()
