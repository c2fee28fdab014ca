"""Exponential backoff with jitter for retrying transient handler errors."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]

_shared_rng = random.Random()


def backoff_delay(
    retry: int, *, base_ms: int, max_ms: int, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first retry).

    The ceiling doubles with each retry up to ``max_ms``; the wait is drawn from the upper
    half of it ("equal jitter"), so instances that failed together spread out without any of
    them retrying at once.
    """
    if retry < 1:
        raise ValueError("retry counts from 1")
    ceiling = min(max_ms, base_ms << (retry - 1)) / 1000
    return ceiling / 2 + (rng or _shared_rng).uniform(0, ceiling / 2)
