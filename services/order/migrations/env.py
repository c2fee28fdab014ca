"""Alembic environment of the order database: its own tables and the platform's."""

from services.order import store
from shared.storage.db import platform_metadata
from shared.storage.migrations import run_environment

run_environment(store.metadata, platform_metadata)
