"""Alembic environment of the order database: its own tables (the platform migrates its own)."""

from services.order import store
from shared.storage.migrations import run_environment

run_environment(store.metadata)
