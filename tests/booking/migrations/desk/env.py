"""Alembic environment of the desk database: its own table (the platform migrates its own)."""

from shared.storage.migrations import run_environment
from tests.booking import desk

run_environment(desk.metadata)
