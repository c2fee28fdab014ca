"""Redis holds a bounded number of idempotency keys: a TTL that fits the fast path, and a
local stack whose Redis evicts the least recently used ones when it is full."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.localstack.redis import redis_server_options
from shared.settings import PlatformSettings

pytestmark = pytest.mark.unit


def test_redis_remembers_a_processed_event_for_an_hour_by_default() -> None:
    # Redeliveries come within minutes of the first delivery (a rebalance, a restart, a
    # relay that published twice): the inbox table is the truth for anything older.
    assert PlatformSettings.model_fields["idempotency_ttl_seconds"].default == 3600


def test_the_local_stacks_redis_is_bounded_and_evicts_the_least_recently_used_keys(
    tmp_path: Path,
) -> None:
    options = redis_server_options(port=16379, folder=tmp_path, environ={})

    assert options["maxmemory-policy"] == "allkeys-lru"
    assert options["maxmemory"] == "256mb"
    assert (
        redis_server_options(port=1, folder=tmp_path, environ={"REDIS_MAXMEMORY": "1gb"})[
            "maxmemory"
        ]
        == "1gb"
    )
