"""Alembic environment of the desk database: its own table and the platform's."""

from shared.storage.db import platform_metadata
from shared.storage.migrations import run_environment
from tests.booking import desk

run_environment(desk.metadata, platform_metadata)
