"""``make chaos`` in small: 200 sagas, one fault of each kind, and verify finds nothing wrong.

It kills a broker, a Redis and a PostgreSQL, so it cannot use the session's shared servers
(other test sessions may be using them): it starts a local stack of its own, the
``chaos-test`` profile (own state folder, own PostgreSQL cluster, its own four services under
their supervisor, ports in its own range), exactly as ``make chaos`` starts the ``chaos``
profile, and stops it at the end whatever happens. What it kills there: one service instance
(SIGKILL; the supervisor restarts it), the broker (SIGKILL, restarted), Redis (SIGKILL,
restarted 5 s later, empty) and PostgreSQL (immediate stop, restarted: crash recovery).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from deploy import localstack
from deploy.chaos import ChaosConfig, Endpoints, run_chaos
from deploy.chaos.report import render, write_report
from deploy.chaos.service_checks import declared_checks
from deploy.localstack import ports, prereqs
from deploy.localstack.declared import PORT_SLOTS
from deploy.localstack.profiles import PROFILES, Profile

PROFILE = "chaos-test"
ORDERS = 200


def _free_block(count: int, first: int, last: int) -> int:
    """The first port of ``count`` free consecutive ones in ``first..last``."""
    for start in range(first, last - count + 2):
        if all(ports.is_free(port) for port in range(start, start + count)):
            return start
    raise RuntimeError(f"no {count} free consecutive ports in {first}-{last}")


def _profile_on_free_ports() -> Profile:
    """The chaos-test profile, its services, broker and Redis moved to ports free now.

    The profile's ports lie in the kernel's range for ports it hands out itself, where this
    session's own end-to-end services (``free_ports``) or a client's connection may sit. The
    PostgreSQL port stays: the cluster keeps the one it was created with.
    """
    fixed = PROFILES[PROFILE]
    kafka = _free_block(2, 49192, 49299)
    return replace(
        fixed,
        first_service_port=_free_block(PORT_SLOTS, 49010, 49091),
        kafka_port=kafka,
        kafka_controller_port=kafka + 1,
        redis_port=_free_block(1, 49380, 49429),
    )


@pytest.fixture
async def chaos_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[Path]:
    """The chaos-test profile's stack, up for this test only; its stack.env. Its logs are
    copied to the test's ``tmp_path`` (``stack-logs``) at the end: pytest keeps the last
    runs' folders, and a failure in CI can be read there when the clone is gone."""
    if os.geteuid() != 0:
        pytest.skip("the chaos smoke test starts its own PostgreSQL cluster, which needs root")
    if problem := prereqs.java_problem():
        pytest.skip(f"the chaos smoke test starts its own broker: {problem}")
    # While the broker is down, aiokafka logs every refused connection (thousands of lines
    # a failure report would print); the run reports what matters itself.
    kafka_log = logging.getLogger("aiokafka")
    level, kafka_log.level = kafka_log.level, logging.CRITICAL
    profile = _profile_on_free_ports()
    monkeypatch.setitem(PROFILES, PROFILE, profile)
    # A broker formatted for other ports has them in its quorum's records: start it afresh.
    shutil.rmtree(profile.state_dir / "kafka", ignore_errors=True)
    # An empty environ: a shell's SAGAKIT_* must not send the stack to servers of yours.
    report = await asyncio.to_thread(localstack.up, PROFILE, {}, lease=os.getpid())
    try:
        yield report.env_file
    finally:
        await asyncio.to_thread(localstack.down, PROFILE, lease=os.getpid())
        kafka_log.setLevel(level)
        kept = tmp_path / "stack-logs"
        shutil.copytree(profile.state_dir / "services", kept, ignore=_not_logs, dirs_exist_ok=True)
        print(f"the stack's logs: {kept}")


def _not_logs(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if not n.endswith(".log") and not os.path.isdir(Path(folder, n))]


async def test_two_hundred_sagas_survive_one_fault_of_each_kind_and_verify_finds_nothing(
    chaos_stack: Path, tmp_path: Path
) -> None:
    # Every field given: CHAOS_* variables in the shell must not change the test.
    config = ChaosConfig(
        env_file=chaos_stack,
        results_dir=tmp_path,
        orders=ORDERS,
        rate=20,
        concurrency=8,
        rounds=1,
        instance_kills=1,
        redis_down_s=5,
        transient_every_s=2,
        recovery_timeout_s=120,
        give_up_s=120,
        settle_timeout_s=180,
        seed=7,
    )
    report = await run_chaos(config, Endpoints.from_env_file(chaos_stack))
    doc = report.to_json()
    print(render(doc))

    assert report.errors == []
    assert report.fault_counts() == {"instance": 1, "broker": 1, "redis": 1, "postgres": 1}
    assert all(fault.recovered_s is not None for fault in report.faults)
    assert {"fail", "transient"} <= set(report.business_faults)
    assert len(report.placement.accepted) == ORDERS and report.placement.refused == {}
    verify = report.verify
    assert verify.settled and verify.source == "databases"
    assert {check.name: check.violations for check in verify.checks} == {
        "sagas terminal": [],
        "money conserved": [],
        "stock conserved": [],
        "no double effect": [],
        "statuses agree": [],
        "services ready": [],
        # And the books each service declares in its folder (services/<name>/checks.py).
        **{check.name: [] for check in declared_checks()},
    }
    assert all(check.checked > 0 and check.skipped is None for check in verify.checks)
    # The mix was a mix: the outcomes its customers and skus make certain happened (failed
    # shipments come from a 5% injected fault only, so a run of 200 may see none of them).
    assert {"COMPLETED", "payment_declined", "out_of_stock"} <= set(verify.outcomes)
    assert set(verify.outcomes) <= {
        "COMPLETED",
        "payment_declined",
        "out_of_stock",
        "shipping_failed",
    }
    assert report.ok and "violation" in render(doc)
    written = write_report(doc, tmp_path)
    assert json.loads(written.read_text())["verify"]["violations"] == 0
