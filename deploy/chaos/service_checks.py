"""Checks a service declares in its own folder: ``services/<name>/checks.py``'s ``CHECKS``.

The saga's books (``deploy.chaos.checks``) hold for the order saga's four services; a service
that only listens (notification, analytics) has books of its own, which only it knows how to
read. Its ``CHECKS`` list ``ServiceCheck``s: ``read`` gathers what it needs from the running
system (its database, its API), ``judge`` compares it with the run's snapshot, without I/O.
``verify`` runs them after the saga's checks and waits for each to hold, reading again, up to
a cap: a listening service trails the saga by a moment (its own consumer group, a webhook to
deliver to), and only what still fails at the cap is a violation. Nothing here names one.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deploy.chaos.checks import CheckResult
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.snapshot import Snapshot
from deploy.localstack.declared import service_names

__all__ = ["ServiceCheck", "declared_checks", "run_service_checks"]

POLL_S = 1.0


@dataclass(frozen=True)
class ServiceCheck:
    """One invariant of a service's own books; see the module docstring."""

    name: str
    read: Callable[[Endpoints, Snapshot], Awaitable[Any]]
    """What it needs, read from the running system (None: it cannot be read here, skipped)."""
    judge: Callable[[Snapshot, Any], CheckResult]
    """The verdict over the snapshot and what ``read`` gave; no I/O."""


def declared_checks() -> list[ServiceCheck]:
    """The ``CHECKS`` of every ``services/<name>/checks.py``, by the services' declared port."""
    found: list[ServiceCheck] = []
    for service in service_names():
        module = f"services.{service}.checks"
        if importlib.util.find_spec(module) is not None:
            declared: Sequence[ServiceCheck] = importlib.import_module(module).CHECKS
            found += declared
    return found


async def settled_result(
    check: ServiceCheck, endpoints: Endpoints, snapshot: Snapshot, timeout: float
) -> CheckResult:
    """The check's verdict once it holds, or the last one when ``timeout`` passes first; a
    read that fails (a service restarting) counts as not holding yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            read = await check.read(endpoints, snapshot)
        except Exception as error:  # what failed to read is the verdict if it lasts
            result = CheckResult(check.name, violations=[f"could not read: {error!r}"[:300]])
        else:
            if read is None:
                return CheckResult(check.name, skipped="what it reads is out of reach here")
            result = check.judge(snapshot, read)
        if result.ok or time.monotonic() > deadline:
            return result
        await asyncio.sleep(POLL_S)


async def run_service_checks(
    endpoints: Endpoints,
    snapshot: Snapshot,
    timeout: float,
    checks: Sequence[ServiceCheck] | None = None,
) -> list[CheckResult]:
    """Every declared check's verdict (``checks`` instead, when given), each waited for up to
    ``timeout`` seconds."""
    chosen = declared_checks() if checks is None else checks
    return [await settled_result(check, endpoints, snapshot, timeout) for check in chosen]
