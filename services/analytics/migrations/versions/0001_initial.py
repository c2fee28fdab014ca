"""Initial schema: the read model (the platform migrates its outbox and inbox).

Revision ID: 0001
Create Date: 2026-12-07 01:21:42.396319
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "durations_per_hour",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("sagas", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "bucket"),
    )
    op.create_table(
        "events_per_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "event_type"),
    )
    op.create_table(
        "orders",
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("total", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "orders_per_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("minute"),
    )
    op.create_table(
        "outcomes_per_minute",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.Numeric(precision=18, scale=2), nullable=False),
        sa.PrimaryKeyConstraint("minute", "outcome", "reason"),
    )


def downgrade() -> None:
    op.drop_table("outcomes_per_minute")
    op.drop_table("orders_per_minute")
    op.drop_table("orders")
    op.drop_table("events_per_minute")
    op.drop_table("durations_per_hour")
