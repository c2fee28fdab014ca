"""Alembic environment of the seats database: its own table (the platform migrates its own)."""

from shared.storage.migrations import run_environment
from tests.booking import seats

run_environment(seats.metadata)
