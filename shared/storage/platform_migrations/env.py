"""Alembic environment of the platform's own tables (outbox and inbox), in every service's
database, versioned apart from the service's tables (``sagakit_platform_version``)."""

from shared.storage.migrations import run_platform_environment

run_platform_environment()
