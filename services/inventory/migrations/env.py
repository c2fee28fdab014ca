"""Alembic environment of the inventory database: its own tables (the platform migrates its own)."""

from services.inventory import store
from shared.storage.migrations import run_environment

run_environment(store.metadata)
