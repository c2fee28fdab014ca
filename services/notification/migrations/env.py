"""Alembic environment of the notification database: its own tables (the platform migrates its
own)."""

from services.notification import store
from shared.storage.migrations import run_environment

run_environment(store.metadata)
