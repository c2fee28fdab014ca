"""The timeline by occurred_at: what timeline retention reads, oldest events first.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-06 21:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("timeline_occurred_at", "timeline", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("timeline_occurred_at", table_name="timeline")
