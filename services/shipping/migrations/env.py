"""Alembic environment of the shipping database: its own tables and the platform's."""

from services.shipping import store
from shared.storage.db import platform_metadata
from shared.storage.migrations import run_environment

run_environment(store.metadata, platform_metadata)
