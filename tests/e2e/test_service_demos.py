"""``make demo``'s scenarios that services declare in their folders (services/<name>/demo.py),
run as the demo runs them against every service and the companions beside them (the
notification receiver), on a system of their own: the analytics scenario holds and rebuilds
its service, and wants no other test's events landing while it compares. And the core
demo's last step, the saga it leaves stuck for the explorer.

A scenario waits for what it shows and fails when it does not come; what it printed and what
the receiver saw are checked besides.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.chaos.endpoints import Endpoints
from deploy.chaos.manifest import Manifest
from deploy.chaos.service_checks import run_service_checks
from deploy.chaos.snapshot import read_databases
from deploy.demo.__main__ import left_stuck, services_scenarios
from deploy.localstack.supervisor import STATE_DIR_VAR, read_status
from services.notification.companions import COMPANIONS
from tests.e2e.conftest import RunningSystem, running_system
from tests.infra import Infrastructure


@pytest.fixture(scope="module")
async def demo_system(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningSystem]:
    async with running_system(infra, tmp_path_factory.mktemp("demo")) as running:
        yield running


async def _run(system: RunningSystem, prefix: str) -> None:
    env = system.env | {STATE_DIR_VAR: str(system.state_dir)}
    scenarios = [(t, run) for t, run in services_scenarios() if t.startswith(prefix)]
    assert scenarios, f"no {prefix} scenario declared"
    for _, run in scenarios:
        await run(system.client, env)


def held(state_dir: Path) -> set[str]:
    return {str(e["name"]) for e in read_status(state_dir) if e.get("held")}


async def _received(system: RunningSystem) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{system.env[COMPANIONS[0].url_var]}/received")
    answer.raise_for_status()
    received: dict[str, Any] = answer.json()
    return received


async def test_the_notification_demo_shows_a_delivery_a_retry_and_a_copy_recognised(
    demo_system: RunningSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    await _run(demo_system, "Notification:")
    shown = capsys.readouterr().out
    received = await _received(demo_system)

    # Three orders completed, each told once: the receiver took three notifications, refused
    # the second's first posts and recognised a copy of the third's.
    taken = [n for n in received["taken"] if n.get("event_type") == "OrderCompleted"]
    assert len(taken) == 3, received
    assert received["refused"] >= 2
    assert sum(received["duplicates"].values()) >= 1
    assert "delivered" in shown and "1 recognised as a copy" in shown
    behaviour = demo_system.env[COMPANIONS[0].url_var] + "/behaviour"
    async with httpx.AsyncClient(timeout=10) as http:
        mended = (await http.put(behaviour, json={})).json()
    assert mended == {"fail_first": 0, "fail_status": 503, "always_fail": False, "slow_first": 0.0}


async def test_the_analytics_demo_rebuilds_the_same_summary_from_kafka(
    demo_system: RunningSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    await _run(demo_system, "Analytics:")
    shown = capsys.readouterr().out
    assert "$ sagakit analytics rebuild --yes" in shown
    assert "the same numbers" in shown, shown
    assert demo_system.restarts().get("analytics", 0) == 0  # held, not crashed
    assert "analytics" not in held(demo_system.state_dir)  # let go again


async def test_the_demo_leaves_a_saga_stuck_for_the_explorer(
    demo_system: RunningSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make demo``'s last step: inventory dead-letters a PaymentProcessed for good, and the
    order service lists the saga as stuck (the step says so, or that it was not listed)."""
    env = demo_system.env | {STATE_DIR_VAR: str(demo_system.state_dir)}
    await left_stuck(demo_system.client, env)
    shown = capsys.readouterr().out

    assert "not listed as stuck" not in shown, shown
    assert "is dead-lettered, so GET /orders?stuck=true lists it" in shown, shown


async def test_the_checks_services_declare_for_verify_hold_on_the_running_system(
    demo_system: RunningSystem,
) -> None:
    """services/<name>/checks.py read the real databases and receiver: a completed, a
    declined and an out-of-stock (refunded) order are each told and counted once."""
    client, run = demo_system.client, uuid.uuid4().hex[:6]
    rich, poor, sku, rare = f"rich-{run}", f"poor-{run}", f"sku-{run}", f"rare-{run}"
    await client.set_balance(rich, "100.00")
    await client.set_balance(poor, "1.00")
    await client.set_stock(sku, 10)
    await client.set_stock(rare, 1)
    for customer, item in (
        (rich, (sku, 1, "5.00")),
        (poor, (sku, 1, "5.00")),
        (rich, (rare, 2, "3.00")),
    ):
        placed = await client.place_order(customer, [item])
        await client.wait_terminal(placed["order_id"])
    manifest = Manifest(balances={rich: Decimal("100.00"), poor: Decimal("1.00")})
    endpoints = Endpoints(demo_system.env, demo_system.state_dir)
    snapshot = await read_databases(endpoints, manifest)
    assert sorted(o.cancel_reason or o.status for o in snapshot.orders.values()) == [
        "COMPLETED",
        "out_of_stock",
        "payment_declined",
    ]

    results = await run_service_checks(endpoints, snapshot, timeout=60)

    assert [(r.name, r.checked, r.violations, r.skipped) for r in results] == [
        ("analytics agrees", 3, [], None),
        ("notifications once each", 4, [], None),
    ]
