"""Alembic environment of the analytics database: its read model (the platform migrates its own)."""

from services.analytics import store
from shared.storage.migrations import run_environment

run_environment(store.metadata)
