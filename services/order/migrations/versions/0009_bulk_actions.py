"""Dead letters by consumer group and error type, and bulk actions with their progress.

``dead_letter_index`` gains ``consumer_group`` and ``error_type`` (the ``dlq.consumer.group``
and ``dlq.error.type`` headers), so the explorer and ``sagakit dlq groups`` group the dead
letters in one query. The rows indexed before have neither: they are deleted, and the index
reads every dead-letter topic again from its beginning at its next refresh (it resumes after
the table's last row of each partition, and there is none), now with both.

``bulk_actions``: one row per bulk replay or bulk cancel an operator started, with what it
selected; ``bulk_action_items``: the items it selected when it started, each with its outcome
once done (null: still to do). A runner takes the pending items in order, so an action left
half done by a crash goes on where it stopped.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM dead_letter_index")
    op.add_column("dead_letter_index", sa.Column("consumer_group", sa.Text(), nullable=True))
    op.add_column("dead_letter_index", sa.Column("error_type", sa.Text(), nullable=True))
    op.create_index(
        "dead_letter_groups",
        "dead_letter_index",
        ["topic", "consumer_group", "error_type", "dead_lettered_at"],
    )
    op.create_table(
        "bulk_actions",
        sa.Column("action_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("selection", JSONB(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("action_id"),
    )
    op.create_table(
        "bulk_action_items",
        sa.Column("action_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("topic", sa.Text(), nullable=True),
        sa.Column("kafka_partition", sa.Integer(), nullable=True),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["bulk_actions.action_id"]),
        sa.PrimaryKeyConstraint("action_id", "seq"),
    )
    op.create_index(
        "bulk_action_items_pending",
        "bulk_action_items",
        ["action_id", "seq"],
        postgresql_where=sa.text("outcome IS NULL"),
    )
    op.create_index(
        "bulk_action_items_position",
        "bulk_action_items",
        ["topic", "kafka_partition", "kafka_offset"],
    )


def downgrade() -> None:
    op.drop_index("bulk_action_items_position", table_name="bulk_action_items")
    op.drop_index("bulk_action_items_pending", table_name="bulk_action_items")
    op.drop_table("bulk_action_items")
    op.drop_table("bulk_actions")
    op.drop_index("dead_letter_groups", table_name="dead_letter_index")
    op.drop_column("dead_letter_index", "error_type")
    op.drop_column("dead_letter_index", "consumer_group")
