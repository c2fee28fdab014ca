"""Initial schema: shipments, and the platform's outbox and inbox.

Revision ID: 0001
Create Date: 2026-11-25 10:10:40.455335
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.storage import platform_schema

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shipments",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("tracking_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("order_id"),
    )
    # The platform's tables (shared.storage.db.platform_metadata), in every service's database.
    platform_schema.create_v1()


def downgrade() -> None:
    platform_schema.drop_v1()
    op.drop_table("shipments")
