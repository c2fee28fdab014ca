"""Waiting, with a bound, until a server answers a real request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from deploy.localstack.errors import StackError
from deploy.localstack.processes import tail

__all__ = ["Probe", "wait_until_answers"]

Probe = Callable[[], Awaitable[object]]

ATTEMPT_TIMEOUT = 10.0
PAUSE = 0.25


def wait_until_answers(
    what: str,
    probe: Probe,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
) -> None:
    """Retry ``probe`` until it succeeds; raise StackError after ``timeout`` seconds.

    ``alive`` lets a process we just started fail fast, with its log, instead of being waited
    for until the deadline. Each attempt runs in a fresh event loop, so this works from any
    thread that is not running one (the test fixture calls it through asyncio.to_thread).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            asyncio.run(asyncio.wait_for(probe(), ATTEMPT_TIMEOUT))
            return
        except Exception as error:  # any failure means "not yet"; the last one is reported
            last_error = error
        if alive is not None and not alive():
            shown = f"; last lines of {log}:\n{tail(log)}" if log else ""
            raise StackError(f"{what} exited while starting{shown}")
        if time.monotonic() > deadline:
            raise StackError(
                f"{what} did not answer within {timeout:.0f} s "
                f"(last error: {type(last_error).__name__}: {last_error})"
            )
        time.sleep(PAUSE)
