"""Timed-out sagas awaiting their compensations, and the dead-letter index as a table.

``orders.awaiting_compensation``: true while a saga the deadline sweeper cancelled still
waits for a compensation (``Saga.outstanding_compensations``), with a partial index so the
stuck listing reads those sagas alone. Before this revision a timed-out saga did not keep
the facts that came after its cancel, so the backfill reads its timeline instead: awaiting
when shipping's refusal is missing, a charge has no refund, or a reservation no release.

``dead_letter_index``: one row per dead-letter record (topic, partition, offset, order id,
when), written by the dead-letter index's reader; the stuck listing joins it by order id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
UPDATE orders SET awaiting_compensation = true
WHERE status = 'CANCELLED' AND cancel_reason = 'timed_out' AND (
    NOT has('ShippingFailed')
    OR (has('PaymentProcessed') AND NOT has('PaymentRefunded'))
    OR (has('InventoryReserved') AND NOT has('InventoryReleased'))
)
"""


def _in_timeline(event_type: str) -> str:
    return (
        "(EXISTS (SELECT 1 FROM timeline t WHERE t.order_id = orders.order_id "
        f"AND t.event_type = '{event_type}') OR '{event_type}' = ANY(orders.facts))"
    )


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("awaiting_compensation", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    backfill = _BACKFILL
    for event_type in (
        "ShippingFailed",
        "PaymentProcessed",
        "PaymentRefunded",
        "InventoryReserved",
        "InventoryReleased",
    ):
        backfill = backfill.replace(f"has('{event_type}')", _in_timeline(event_type))
    op.execute(backfill)
    op.create_index(
        "orders_awaiting_compensation",
        "orders",
        ["updated_at"],
        postgresql_where=sa.text("awaiting_compensation"),
    )
    op.create_table(
        "dead_letter_index",
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.Text(), nullable=True),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", "kafka_partition", "kafka_offset"),
    )
    op.create_index(
        op.f("ix_dead_letter_index_order_id"), "dead_letter_index", ["order_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dead_letter_index_order_id"), table_name="dead_letter_index")
    op.drop_table("dead_letter_index")
    op.drop_index("orders_awaiting_compensation", table_name="orders")
    op.drop_column("orders", "awaiting_compensation")
