"""Where each timeline event was read: its Kafka topic, partition and offset.

Null for the events recorded before this revision (their positions were not kept).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("timeline", sa.Column("kafka_topic", sa.Text(), nullable=True))
    op.add_column("timeline", sa.Column("kafka_partition", sa.Integer(), nullable=True))
    op.add_column("timeline", sa.Column("kafka_offset", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("timeline", "kafka_offset")
    op.drop_column("timeline", "kafka_partition")
    op.drop_column("timeline", "kafka_topic")
