"""Indexes retention reads: sent outbox rows by sent_at (partial: unsent rows are never
purged, and the unsent index serves them), inbox rows by processed_at.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 21:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "sagakit_outbox_sent_at",
        "sagakit_outbox",
        ["sent_at"],
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
    op.create_index("sagakit_inbox_processed_at", "sagakit_inbox", ["processed_at"])


def downgrade() -> None:
    op.drop_index("sagakit_inbox_processed_at", table_name="sagakit_inbox")
    op.drop_index(
        "sagakit_outbox_sent_at",
        table_name="sagakit_outbox",
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
