"""What the demo's scenarios share, the saga's and the services' own (``services/<name>/demo.py``):
how they print, and how they wait for what they show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["POLL_S", "say", "short", "table", "wait_for"]

T = TypeVar("T")
POLL_S = 0.1


def say(text: str = "") -> None:
    print(text, flush=True)


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    say("    " + line.format(*header))
    say("    " + line.format(*("-" * w for w in widths)))
    for row in rows:
        say("    " + line.format(*map(str, row)))


def short(identifier: str) -> str:
    return identifier[:8]


async def wait_for(what: str, probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0) -> T:
    """What ``probe`` gives once it gives something (not None), asked every ``POLL_S``;
    TimeoutError naming ``what`` if it gives nothing within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(POLL_S)
