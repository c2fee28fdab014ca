"""Alembic environment of the shipping database: its own tables (the platform migrates its own)."""

from services.shipping import store
from shared.storage.migrations import run_environment

run_environment(store.metadata)
