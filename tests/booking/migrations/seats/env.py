"""Alembic environment of the seats database: its own table and the platform's."""

from shared.storage.db import platform_metadata
from shared.storage.migrations import run_environment
from tests.booking import seats

run_environment(seats.metadata, platform_metadata)
