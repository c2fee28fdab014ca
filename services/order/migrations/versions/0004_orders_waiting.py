"""The orders_waiting index: the sagas of each status by the time they entered it.

The deadline sweeper asks every few seconds for the sagas that have waited too long in a
non-terminal status; with (status, updated_at) that is one short index range per status
instead of a scan of every order.

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-01 23:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("orders_waiting", "orders", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("orders_waiting", table_name="orders")
