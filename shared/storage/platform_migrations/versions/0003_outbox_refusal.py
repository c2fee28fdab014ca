"""The outbox's refusal: why Kafka refused a row for good, and where it went instead.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sagakit_outbox", sa.Column("refusal", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sagakit_outbox", "refusal")
