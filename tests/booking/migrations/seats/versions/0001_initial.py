"""The seats' holds (the platform migrates its outbox and inbox).

Revision ID: 0001
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
        "holds",
        sa.Column("seat", sa.Text(), primary_key=True),
        sa.Column("booking_id", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("a test's database is dropped, not downgraded")
