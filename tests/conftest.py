"""Test tiers by folder, and the session's real infrastructure.

``tests/unit`` tests are marked ``unit``, ``tests/integration`` ones ``integration`` and
``tests/e2e`` ones ``e2e``. The ``infra`` fixture starts real Kafka, PostgreSQL and Redis (see
tests/infra.py) the first time a test asks for it, so a run of unit tests starts nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.infra import Infrastructure, session_infrastructure

# The tests' own Kafka cluster, shared by the integration and end-to-end tiers.
from tests.kafka_cluster import cluster, kafka_cluster, scram_broker  # noqa: F401

TESTS = Path(__file__).parent
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its folder's tier; refuse unit tests that ask for infrastructure."""
    wrong = []
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        tier = item.path.relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "unit" and "infra" in getattr(item, "fixturenames", ()):
            wrong.append(item.nodeid)
    if wrong:
        raise pytest.UsageError(
            "unit tests do no I/O, but these ask for the infra fixture (move them to "
            "tests/integration): " + ", ".join(wrong)
        )


@pytest.fixture(scope="session")
async def infra() -> AsyncIterator[Infrastructure]:
    """Real Kafka, PostgreSQL and Redis for the whole session, cleaned up at its end."""
    async with session_infrastructure() as infrastructure:
        yield infrastructure
