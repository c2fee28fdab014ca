"""The moment as of which sagas are judged stuck: ``deadline_clock``, one row.

The deadline sweeper writes its read horizon there at each sweep (the latest moment by which
the order group had read everything its topics held); the stuck listing, the stuck gauge and
the bulk cancel judge deadlines as of it, so that a saga whose outcome waits in the order
group's backlog is neither shown as stuck nor cancelled. No row (before the first sweep):
as of now.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deadline_clock",
        sa.Column("id", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id", name="deadline_clock_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("deadline_clock")
