"""The platform's tables (outbox and inbox) as migration steps, one function per version.

Every service's database holds these tables next to its own, so each service's migrations
call the steps here instead of copying them. A released version never changes (a migration
that has run must mean the same thing when it runs again on a new database): a change to the
platform's tables is a new pair of functions here, called from a new revision in every
service. ``tests/integration/test_migrations.py`` checks the result against
``shared.storage.db.platform_metadata``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

__all__ = [
    "add_refusal_v3",
    "add_retention_indexes_v4",
    "create_v1",
    "downgrade_v2",
    "drop_refusal_v3",
    "drop_retention_indexes_v4",
    "drop_v1",
    "upgrade_v2",
]


def _created_at(name: str) -> sa.Column[datetime]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def create_v1() -> None:
    """The inbox, the outbox and the outbox's index of unsent rows."""
    op.create_table(
        "sagakit_inbox",
        sa.Column("consumer_group", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        _created_at("processed_at"),
        sa.PrimaryKeyConstraint("consumer_group", "event_id"),
    )
    op.create_table(
        "sagakit_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _created_at("created_at"),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "sagakit_outbox_unsent",
        "sagakit_outbox",
        ["id"],
        postgresql_where=sa.text("sent_at IS NULL"),
    )


def drop_v1() -> None:
    """Undo ``create_v1``."""
    op.drop_index(
        "sagakit_outbox_unsent",
        table_name="sagakit_outbox",
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.drop_table("sagakit_outbox")
    op.drop_table("sagakit_inbox")


def upgrade_v2() -> None:
    """The outbox's ``traceparent``: the trace context each row is published with."""
    op.add_column("sagakit_outbox", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade_v2() -> None:
    """Undo ``upgrade_v2``."""
    op.drop_column("sagakit_outbox", "traceparent")


def add_refusal_v3() -> None:
    """The outbox's ``refusal``: why Kafka refused a row for good, and where it went instead."""
    op.add_column("sagakit_outbox", sa.Column("refusal", sa.Text(), nullable=True))


def drop_refusal_v3() -> None:
    """Undo ``add_refusal_v3``."""
    op.drop_column("sagakit_outbox", "refusal")


def add_retention_indexes_v4() -> None:
    """The indexes retention reads (``shared.publishing.retention``): sent outbox rows by
    ``sent_at`` (partial: unsent rows are never purged, and the unsent index serves them), inbox
    rows by ``processed_at``. Without them each purge batch scanned its whole table."""
    op.create_index(
        "sagakit_outbox_sent_at",
        "sagakit_outbox",
        ["sent_at"],
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
    op.create_index("sagakit_inbox_processed_at", "sagakit_inbox", ["processed_at"])


def drop_retention_indexes_v4() -> None:
    """Undo ``add_retention_indexes_v4``."""
    op.drop_index("sagakit_inbox_processed_at", table_name="sagakit_inbox")
    op.drop_index(
        "sagakit_outbox_sent_at",
        table_name="sagakit_outbox",
        postgresql_where=sa.text("sent_at IS NOT NULL"),
    )
