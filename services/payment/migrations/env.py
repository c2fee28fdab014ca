"""Alembic environment of the payment database: its own tables (the platform migrates its own)."""

from services.payment import store
from shared.storage.migrations import run_environment

run_environment(store.metadata)
