"""What the broker says about topics: how many partitions they have, and whether each has a
leader yet (a topic just created has none for a moment, and clients log errors meanwhile)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

__all__ = ["partition_count", "wait_for_leaders"]


async def _describe(options: dict[str, Any], topics: Sequence[str]) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        found: list[dict[str, Any]] = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return found


async def partition_count(options: dict[str, Any], topic: str) -> int | None:
    """The partitions of ``topic``, or None when it does not exist."""
    [described] = await _describe(options, [topic])
    return len(described["partitions"]) if described["error_code"] == 0 else None


async def wait_for_leaders(
    options: dict[str, Any], topics: Sequence[str], timeout: float = 30.0
) -> None:
    """Return once every partition of ``topics`` has a leader."""
    deadline = time.monotonic() + timeout
    while True:
        described = await _describe(options, topics)
        if all(
            topic["error_code"] == 0
            and topic["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])
            for topic in described
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {', '.join(topics)} have no leaders after {timeout} s")
        await asyncio.sleep(0.1)
