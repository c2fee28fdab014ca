"""``verify``: wait until the sagas have ended, read where everything stands, check it.

The one implementation of the system's invariants (``deploy.chaos.checks``): ``make chaos``
runs it after the faults, ``python -m deploy.chaos verify`` on its own, and the end-to-end
tests' ledger over what each test set up.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from deploy.chaos.checks import CheckResult, check
from deploy.chaos.endpoints import Endpoints
from deploy.chaos.manifest import Manifest
from deploy.chaos.service_checks import run_service_checks
from deploy.chaos.snapshot import Snapshot, read_databases

__all__ = ["VerifyReport", "verify", "verify_snapshot", "wait_until_settled"]

POLL_S = 1.0
SERVICE_CHECKS_WAIT_S = 120.0
"""How long each check a service declares may wait to hold (``deploy.chaos.service_checks``)."""
# Sagas still under way, and stock still reserved (an order is COMPLETED a moment before
# inventory has moved its reservation to shipped: two consumer groups read OrderShipped).
_BUSY_ORDERS = (
    "SELECT count(*) FROM orders WHERE customer_id = ANY($1::text[]) "
    "AND status NOT IN ('COMPLETED', 'CANCELLED')"
)
_RESERVED = "SELECT coalesce(sum(reserved), 0) FROM stock WHERE sku = ANY($1::text[])"
_UNSENT = "SELECT count(*) FROM sagakit_outbox WHERE sent_at IS NULL"


@dataclass
class VerifyReport:
    """The checks' results, and how the sagas ended."""

    checks: list[CheckResult]
    outcomes: dict[str, int]
    """Orders by final status (a cancelled one by its reason)."""
    settled: bool
    """Whether everything came to rest before the deadline (if not, the checks say what not)."""
    settle_s: float
    source: str
    """``databases`` or ``http``: what the snapshot was read from."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def violations(self) -> int:
        return sum(len(result.violations) for result in self.checks)

    @property
    def ok(self) -> bool:
        return self.violations == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": self.violations,
            "settled": self.settled,
            "settle_s": round(self.settle_s, 1),
            "source": self.source,
            "outcomes": self.outcomes,
            "checks": [result.to_json() for result in self.checks],
        }


def outcomes(snapshot: Snapshot) -> dict[str, int]:
    counted = Counter(
        order.cancel_reason or order.status if order.status == "CANCELLED" else order.status
        for order in snapshot.orders.values()
    )
    return dict(sorted(counted.items()))


def verify_snapshot(
    manifest: Manifest, snapshot: Snapshot, *, settled: bool, settle_s: float, source: str
) -> VerifyReport:
    return VerifyReport(
        check(manifest, snapshot), outcomes(snapshot), settled, settle_s, source=source
    )


async def _count(dsn: str, query: str, *args: Any) -> int:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await connection.fetchval(query, *args))
    finally:
        await connection.close()


async def _busy(endpoints: Endpoints, manifest: Manifest) -> dict[str, int]:
    """What is not at rest yet: orders under way, units reserved, events not yet sent."""
    busy = {
        "orders under way": await _count(
            endpoints.database_dsn("order"), _BUSY_ORDERS, list(manifest.balances)
        ),
        "units reserved": await _count(
            endpoints.database_dsn("inventory"), _RESERVED, list(manifest.stock)
        ),
    }
    for service in endpoints.services:
        busy[f"{service} events unsent"] = await _count(endpoints.database_dsn(service), _UNSENT)
    return {what: n for what, n in busy.items() if n}


async def wait_until_settled(
    endpoints: Endpoints, manifest: Manifest, timeout: float
) -> tuple[bool, dict[str, int]]:
    """Poll the databases until nothing is under way; (settled, what was busy last)."""
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {"no answer yet": 1}
    while True:
        try:
            last = await _busy(endpoints, manifest)
        except (OSError, asyncpg.PostgresError) as error:
            last = {f"database unreachable ({type(error).__name__})": 1}
        if not last:
            return True, {}
        if time.monotonic() > deadline:
            return False, last
        await asyncio.sleep(POLL_S)


async def verify(endpoints: Endpoints, manifest: Manifest, timeout: float = 300.0) -> VerifyReport:
    """Wait up to ``timeout`` seconds for the system to come to rest, then check it all.

    Reads the saga's four services' databases (``SAGAKIT_<SERVICE>_DATABASE_URL``) and asks
    every instance's ``/readyz``; then runs the checks the services declare in their folders
    (``services/<name>/checks.py``), each waiting for its books to catch up.
    """
    began = time.monotonic()
    settled, busy = await wait_until_settled(endpoints, manifest, timeout)
    settle_s = time.monotonic() - began
    snapshot = await read_databases(endpoints, manifest)
    report = verify_snapshot(
        manifest, snapshot, settled=settled, settle_s=settle_s, source="databases"
    )
    report.checks += await run_service_checks(
        endpoints, snapshot, min(timeout, SERVICE_CHECKS_WAIT_S)
    )
    if busy:
        report.extra["busy_at_deadline"] = busy
    return report
