"""Initial schema: notifications and each order's customer (the platform migrates its outbox
and inbox).

Revision ID: 0001
Create Date: 2026-12-07 01:21:42.810779
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "notifications_by_customer", "notifications", ["customer_id", "id"], unique=False
    )
    op.create_index("notifications_by_order", "notifications", ["order_id", "id"], unique=False)
    op.create_index(
        "notifications_due",
        "notifications",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "notifications_finished",
        "notifications",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('delivered', 'recorded')"),
    )
    op.create_table(
        "order_customers",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("order_customers_created_at", "order_customers", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("order_customers_created_at", table_name="order_customers")
    op.drop_table("order_customers")
    op.drop_index(
        "notifications_finished",
        table_name="notifications",
        postgresql_where=sa.text("status IN ('delivered', 'recorded')"),
    )
    op.drop_index(
        "notifications_due",
        table_name="notifications",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index("notifications_by_order", table_name="notifications")
    op.drop_index("notifications_by_customer", table_name="notifications")
    op.drop_table("notifications")
