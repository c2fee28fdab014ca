"""``make bench`` cannot rot: every scenario of the benchmark, tiny, against the end-to-end
system. It checks that each runs and reports what it should, not how fast anything is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.config import SCENARIOS, BenchSettings
from bench.hops import HAPPY_PATH, STAGES
from bench.plot import can_plot
from bench.report import render
from bench.results import write_results
from bench.run import SyncPlacement, run
from bench.target import Target
from tests.e2e.conftest import RunningSystem
from tests.infra import Infrastructure

ORDERS = 20
# Every field given: BENCH_* variables in the shell must not change the test.
TINY = BenchSettings(
    env_file=Path("unused"),
    results_dir=Path("unused"),
    scenarios=SCENARIOS,
    customers=10,
    skus=4,
    clients=4,
    warmup_orders=0,
    orders=ORDERS,
    saga_timeout_s=30,
    open_rates=(10,),
    open_seconds=1,
    open_max_in_flight=100,
    drain_timeout_s=30,
    transport_chains=50,
    transport_in_flight=10,
    transport_unloaded_chains=5,
    sync_seconds=1,
    outage_rate=10,
    outage_seconds=0.5,
    outage_margin_s=0.25,
    stall_rate=20,
    stall_partitions=3,
    stall_seconds=2,
    stall_margin_s=1,
)


def _positive(*values: Any) -> bool:
    return all(isinstance(v, int | float) and v > 0 for v in values)


async def test_every_scenario_runs_and_its_results_are_written(
    system: RunningSystem, infra: Infrastructure, tmp_path: Path
) -> None:
    target = Target({**system.env, "SAGAKIT_POSTGRES_URL": infra.postgres_url}, system.state_dir)
    placement = SyncPlacement(f"bench_{infra.run_id}", tmp_path / "syncchain")
    doc = await run(TINY, target, placement, "asyncio")

    assert doc["errors"] == {}
    scenarios = doc["scenarios"]
    closed = scenarios["closed_loop"]
    assert closed["accepted"] == ORDERS and closed["errors"] == {}
    assert closed["sagas"]["completed"] == ORDERS and closed["sagas"]["not_completed"] == {}
    assert _positive(closed["accepted_per_s"], closed["sagas"]["completed_per_s"])
    assert closed["sagas"]["latency"]["count"] == ORDERS
    assert _positive(closed["api_latency"]["p50_ms"], closed["sagas"]["latency"]["p99_ms"])

    cpu = closed["cpu"]
    assert cpu["completed_sagas"] == ORDERS and _positive(cpu["per_saga_ms"])
    # The fixture's Kafka and PostgreSQL are the test stack's, not measured: the services are.
    assert {"order", "payment", "inventory", "shipping"} <= set(cpu["per_saga_ms_by_process"])
    assert "bench" not in cpu["per_saga_ms_by_process"]

    [step] = scenarios["open_loop"]
    assert step["due"] == 10 and step["accepted"] == 10 and step["sagas"]["completed"] == 10
    assert _positive(step["achieved_per_s"], step["sagas"]["latency"]["p50_ms"])
    for hops, sagas in ((closed["hops"], ORDERS), (step["hops"], 10)):
        happy = [hop for hop in hops if hop["happy_path_step"] is not None]
        assert [(hop["topic"], hop["group"]) for hop in happy] == list(HAPPY_PATH)
        for hop in happy:
            assert all(hop["stages"][stage] for stage in STAGES), hop
            assert hop["stages"]["committed"]["count"] >= sagas, hop
            assert _positive(*(hop["stages"][stage]["mean_ms"] for stage in STAGES)), hop

    transport = scenarios["transport"]
    assert transport["completed"] == 50 and transport["partitions"] > 0
    assert _positive(transport["chains_per_s"], *(h["p50_ms"] for h in transport["hop_latency"]))
    assert len(transport["value_bytes"]) == 5 and _positive(*transport["value_bytes"])

    sync = scenarios["synchronous"]
    assert sync["completed"] > 0 and sync["errors"] == {}
    assert _positive(sync["orders_per_s"], sync["latency"]["p50_ms"])

    for design in ("event_driven", "synchronous"):
        outage = scenarios[f"outage_{design}"]
        assert outage["stopped"] and outage["during"]["due"] == 5
        assert outage["unfinished"] == 0 and outage["drain_after_resume_s"] is not None
    # Payment frozen or not, the event-driven API takes every order.
    assert scenarios["outage_event_driven"]["during"]["accepted"] == 5

    # A three-broker cluster of the scenario's own: one partition lost its leader for a while,
    # and every event emitted, to it or to the others, arrived.
    stall = scenarios["stall"]
    assert stall["emitted"] >= 20 and stall["arrived"] == stall["emitted"]
    assert all(stall["healthy_latency"][phase] for phase in ("before", "stalled", "after"))
    assert stall["stalled_partition_latency"]["count"] > 0

    assert _positive(*doc["ratios"].values())
    assert doc["machine"]["cores"] > 0 and doc["versions"]["postgresql"]
    assert doc["platform_settings"]["constants"]["shared.publishing.producer"]["LINGER_MS"] >= 0
    shown = render(doc)
    assert "closed loop" in shown and "transport limit" in shown and "without a leader" in shown
    assert "latency per hop at 10/s" in shown and "CPU per saga" in shown

    data, picture = write_results(doc, tmp_path / "results")
    assert json.loads(data.read_text()) == json.loads(json.dumps(doc))
    assert (picture is not None and picture.stat().st_size > 0) == can_plot()
