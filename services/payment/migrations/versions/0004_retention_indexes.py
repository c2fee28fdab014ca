"""Indexes for retention: sent outbox rows by sent_at, inbox rows by processed_at.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 21:30:00.000000
"""

from collections.abc import Sequence

from shared.storage import platform_schema

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    platform_schema.add_retention_indexes_v4()


def downgrade() -> None:
    platform_schema.drop_retention_indexes_v4()
