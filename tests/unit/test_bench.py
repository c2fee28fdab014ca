"""The benchmark's arithmetic: percentiles, rates, saga outcomes, what "kept up" means, and
the settings' parsing. Pure: the scenarios themselves run in tests/e2e/test_bench_smoke.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from bench.config import BenchSettings
from bench.open_loop import KEEP_UP_GRACE_S, OpenLoopStep, keep_up_misses
from bench.report import render
from bench.reset import refuse_unless_ours
from bench.sagas import SagaRow, outcome
from bench.stall import STALLED_BROKER, STALLED_PARTITION, keys_by_partition, replica_placement
from bench.stats import percentile, rate, summarize
from bench.target import Target
from deploy.localstack.declared import service_names


def test_percentiles_interpolate_between_neighbours() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == 25.0
    assert percentile(values, 100) == 40.0


def test_a_summary_has_the_tail_and_a_curve_to_plot() -> None:
    summary = summarize(float(ms) for ms in range(1, 101))
    assert summary is not None
    assert (summary.count, summary.p50, summary.max) == (100, 50.5, 100.0)
    assert summary.p95 < summary.p99 < summary.max
    (first, first_ms), (last, _) = summary.curve[0], summary.curve[-1]
    assert (first, last) == (1, 99.9) and first_ms == pytest.approx(1.99)


def test_nothing_measured_is_no_summary_and_no_rate() -> None:
    assert summarize([]) is None
    assert rate(0, 10.0) is None and rate(5, 0.0) is None
    assert rate(50, 10.0) == 5.0


def test_sagas_per_second_run_from_the_first_acceptance_to_the_last_completion() -> None:
    rows = [
        SagaRow("a", "COMPLETED", created=100.0, updated=101.0),
        SagaRow("b", "COMPLETED", created=100.5, updated=104.0),
        SagaRow("c", "PAID", created=101.0, updated=101.2),
    ]
    result = outcome(rows, expected=4)
    assert result.completed == 2 and result.window_s == 4.0 and result.per_s == 0.5
    assert result.not_completed == {"PAID": 1, "missing from the database": 1}
    assert result.latency is not None and result.latency.max == pytest.approx(3500.0)


def _step(**changes: object) -> OpenLoopStep:
    rows = [SagaRow("a", "COMPLETED", created=0.0, updated=31.0)]
    fields: dict[str, object] = {
        "offered_per_s": 10.0,
        "seconds": 30.0,
        "due": 300,
        "not_sent": 0,
        "accepted": 300,
        "errors": {},
        "achieved_per_s": 10.0,
        "api": None,
        "send_lag": None,
        "sagas": outcome(rows, expected=1),
        "end_of_window": 30.0,
        "misses": (),
    }
    return OpenLoopStep(**(fields | changes))  # type: ignore[arg-type]


def test_keeping_up_means_the_rate_accepted_and_every_saga_done_soon_after() -> None:
    assert keep_up_misses(_step()) == ()
    assert keep_up_misses(_step(achieved_per_s=9.0)) == ("accepted 9.0/s of 10/s",)
    late = outcome([SagaRow("a", "COMPLETED", 0.0, 30.0 + KEEP_UP_GRACE_S + 1)], expected=1)
    assert keep_up_misses(_step(sagas=late)) == ("last saga completed 6.0 s after the window",)
    assert keep_up_misses(_step(not_sent=3, errors={"503": 2}))[:2] == (
        "3 not sent (too many in flight)",
        "2 errors",
    )


def test_lists_are_comma_separated_and_scenarios_must_exist() -> None:
    settings = BenchSettings(scenarios="closed, open", open_rates="5,50")
    assert settings.scenarios == ("closed", "open") and settings.open_rates == (5.0, 50.0)
    with pytest.raises(ValidationError, match="unknown scenarios"):
        BenchSettings(scenarios="closed,fast")


def test_the_partition_stall_runs_only_when_named() -> None:
    # It starts a cluster of its own and runs for minutes: not part of the default run.
    assert "stall" not in BenchSettings().scenarios
    assert BenchSettings(scenarios="stall").scenarios == ("stall",)


def test_the_stalled_partition_alone_sits_on_the_broker_that_is_killed() -> None:
    placement = replica_placement(6)
    assert placement[STALLED_PARTITION] == [STALLED_BROKER]
    others = [brokers for p, brokers in placement.items() if p != STALLED_PARTITION]
    assert all(len(b) == 1 and STALLED_BROKER not in b for b in others)
    assert {b[0] for b in others} == {1, 2}
    keys = keys_by_partition(6)
    every = list(range(6))
    assert [DefaultPartitioner()(k.encode(), every, every) for k in keys] == every


def test_a_run_without_scenarios_still_renders() -> None:
    doc = {
        "started_at": "2026-01-01T00:00:00+00:00",
        "commit": {"sha": "abc", "changed_files": []},
        "machine": {
            "cores": 2,
            "cpu": "x",
            "memory_gib": 1.0,
            "python": "3.11",
            "load_average_at_start": [0.1],
        },
        "versions": {"kafka": "4.1.1 (pom)", "postgresql": "15", "redis": "7"},
        "bench_settings": {"event_loop": "asyncio"},
        "platform_settings": {"topic_partitions": 6, "instances": {"order": 1}},
        "scenarios": {},
        "errors": {"closed loop": "TimeoutError: boom"},
        "elapsed_s": 1.0,
    }
    text = render(doc)
    assert "2 cores" in text and "FAILED closed loop: TimeoutError: boom" in text


def _stack(profile: str, postgres_port: int, redis_port: int) -> Target:
    env = {
        "SAGAKIT_STACK_PROFILE": profile,
        "SAGAKIT_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }
    for service in service_names():  # every service the stack runs
        url = f"postgresql+asyncpg://sagakit:sagakit@127.0.0.1:{postgres_port}/sagakit_{service}"
        env[f"SAGAKIT_{service.upper()}_DATABASE_URL"] = url
    return Target(env, Path("unused"))


def test_only_the_bench_profiles_own_servers_are_ever_emptied() -> None:
    refuse_unless_ours(_stack("bench", 25432, 26379))
    with pytest.raises(RuntimeError, match="refusing to empty a dev stack"):
        refuse_unless_ours(_stack("dev", 5432, 6379))
    # A bench stack.env written while the shell named the dev stack's servers.
    with pytest.raises(RuntimeError, match=r"refusing to empty 127\.0\.0\.1:5432"):
        refuse_unless_ours(_stack("bench", 5432, 26379))
