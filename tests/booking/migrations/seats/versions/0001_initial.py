"""The seats' holds, and the platform's tables at their current version.

Revision ID: 0001
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
        "holds",
        sa.Column("seat", sa.Text(), primary_key=True),
        sa.Column("booking_id", sa.Text(), nullable=False),
    )
    platform_schema.create_v1()
    platform_schema.upgrade_v2()
    platform_schema.add_refusal_v3()
    platform_schema.add_retention_indexes_v4()


def downgrade() -> None:
    raise NotImplementedError("a test's database is dropped, not downgraded")
