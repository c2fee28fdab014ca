"""``make soak`` in small: two minutes of orders with the retention windows compressed to
20 s, and the verdict's deterministic checks hold.

It starts a local stack of its own (the ``soak-test`` profile: own ports, state folder and
PostgreSQL cluster, its own four services under their supervisor), exactly as ``make soak``
starts the ``soak`` profile, and stops it at the end whatever happens. The run's timing
figures (saga p99 drift, the relay's publish latency, every process's memory) are reported,
not asserted: two minutes on a loaded machine say nothing about them; ``make soak`` judges
them over half an hour.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.localstack import prereqs
from deploy.localstack.declared import service_names
from deploy.soak import SoakConfig, soak
from deploy.soak.report import render

BOUNDED = ("sagakit_inbox", "sagakit_outbox", "timeline")


@pytest.fixture
def config(tmp_path: Path) -> SoakConfig:
    if os.geteuid() != 0:
        pytest.skip("the soak smoke test starts its own PostgreSQL cluster, which needs root")
    if problem := prereqs.java_problem():
        pytest.skip(f"the soak smoke test starts its own broker: {problem}")
    return SoakConfig(
        profile="soak-test",
        rate=20,
        minutes=2,
        sample_s=5,
        retention_s=20,
        idempotency_ttl_s=20,
        replay_every_s=20,
        settle_timeout_s=180,
        plot=False,
        results_dir=tmp_path,
    )


def test_two_minutes_of_orders_leave_no_violation_and_bounded_platform_tables(
    config: SoakConfig,
) -> None:
    doc = soak(config)
    report = render(doc)
    checks = {check["name"]: check for check in doc["checks"]}
    assert doc["errors"] == [], report
    assert doc["load"]["accepted"] == config.orders, report
    assert checks["verify"]["ok"], report
    assert doc["dead_letters"]["replay_rounds"] >= 2, report
    assert checks["replays add one dead letter per copy at most"]["ok"], report
    bounded = [
        check
        for name, check in checks.items()
        if name.startswith("rows of ") and name.rsplit(".", 1)[1] in BOUNDED
    ]
    # The inbox and outbox of every service, and the order service's timeline.
    assert len(bounded) == 2 * len(service_names()) + 1, report
    assert all(check["ok"] for check in bounded), report
    assert checks["Redis keys"]["ok"], report
