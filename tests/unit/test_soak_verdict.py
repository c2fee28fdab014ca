"""The soak's verdict from its samples, without a stack: what is flat, what grows, what
drifts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from deploy.soak.load import Answer, Load
from deploy.soak.verdict import (
    flat_checks,
    growth_per_saga,
    latency_windows,
    publish_ms,
    thirds,
    verdict,
)


def sample(
    t: float, *, rss: float, keys: int, inbox: int, orders: int, mb: float
) -> dict[str, Any]:
    return {
        "t_s": t,
        "processes": {"order": {"rss_mb": rss, "cpu_s": t / 10}},
        "redis": {"used_mb": keys / 1000, "keys": keys},
        "tables": {
            "order.sagakit_inbox": {"rows": inbox, "mb": 1.0},
            "order.orders": {"rows": orders, "mb": mb},
        },
        "metrics": {"published": t * 10, "publish_s": t * 0.02, "lag": 0, "dlq_records": 0},
    }


def steady(n: int = 30, *, keys_per_s: float = 0.0) -> list[dict[str, Any]]:
    return [
        sample(
            t * 10.0,
            rss=100.0,
            keys=5000 + int(keys_per_s * t * 10),
            inbox=40_000,
            orders=t * 1000,
            mb=t * 1.0,
        )
        for t in range(1, n + 1)
    ]


def by_name(checks: list[Any]) -> dict[str, Any]:
    return {check.name: check for check in checks}


def test_thirds_leave_the_warm_up_out_and_split_the_rest_in_two() -> None:
    middle, last = thirds(steady(30), warmup_fraction=1 / 3)
    assert [s["t_s"] for s in middle] == [100.0 + 10 * i for i in range(10)]
    assert [s["t_s"] for s in last] == [200.0 + 10 * i for i in range(11)]


def test_flat_series_pass_and_a_growing_one_fails_naming_it() -> None:
    checks = by_name(
        flat_checks(
            steady(30, keys_per_s=100.0),
            warmup_fraction=1 / 3,
            tolerance=0.10,
            bounded_tables=("sagakit_inbox",),
        )
    )
    assert checks["memory of order"].ok
    assert checks["rows of order.sagakit_inbox"].ok
    assert not checks["Redis keys"].ok
    assert "keys" in checks["Redis keys"].detail
    # The business table is not judged flat: it grows with every saga by design.
    assert "rows of order.orders" not in checks


def test_growth_is_reported_in_bytes_per_saga_for_the_unbounded_tables() -> None:
    growth = growth_per_saga(steady(30), warmup_fraction=1 / 3)
    # 1 MB and 1,000 orders per sample: 1,048.576 bytes per saga.
    assert growth == {"order.orders": 1049}


def test_publish_latency_is_the_mean_per_row_over_the_window() -> None:
    assert publish_ms(steady(30)) == 2.0


HEALTHY: dict[str, Any] = {
    "warmup_fraction": 1 / 3,
    "tolerance": 0.10,
    "p99_middle_ms": 100.0,
    "p99_last_ms": 110.0,
    "p99_limit": 1.5,
    "timeline_bounded": False,
    "violations": 0,
    "dead_letters_beyond_copies": 0,
    "behind_s": 0.5,
    "given_up": 0,
    "behind_limit_s": 10.0,
}


def judged(**changes: Any) -> dict[str, Any]:
    return by_name(verdict(steady(30), **(HEALTHY | changes)))


def test_a_healthy_run_passes_every_check() -> None:
    failed = [check for check in judged().values() if not check.ok]
    assert failed == []


def test_the_verdict_fails_on_violations_dead_letters_beyond_the_copies_and_p99_drift() -> None:
    checks = judged(violations=1, dead_letters_beyond_copies=3, p99_last_ms=200.0)
    assert not checks["verify"].ok
    assert not checks["replays add one dead letter per copy at most"].ok
    assert not checks["saga p99 drift"].ok
    assert "x2.00" in checks["saga p99 drift"].detail


def test_a_run_that_could_not_offer_its_rate_fails() -> None:
    # A system that cannot take the rate sheds it (503, sent again) and the load falls
    # behind its schedule: every series is then measured at a lower rate than the one asked
    # for, and a flat verdict on them says nothing about the rate. (The run of 2026-12-07T22:48
    # on a machine half as fast: 1,095 s behind, 316,370 answers 503, and every other check
    # passed.)
    behind = judged(behind_s=1095.0)["load kept its rate"]
    assert not behind.ok
    assert "1095 s behind" in behind.detail
    assert not judged(given_up=3)["load kept its rate"].ok


def test_a_load_window_holds_the_answers_that_came_in_it() -> None:
    load = Load(answers=[Answer(at_s=t / 2, latency_s=0.01, status=202) for t in range(20)])
    assert [a.at_s for a in load.window(2.0, 4.0)] == [2.0, 2.5, 3.0, 3.5]
    assert load.window(50.0, 60.0) == []


def test_the_saga_p99_is_compared_between_the_thirds_after_the_warm_up() -> None:
    # A cold start (the first minutes' sagas slow) must neither fail the drift check nor
    # hide a drift after it: the windows are the ones every other series is judged on.
    began = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    middle, last = latency_windows(began, began + timedelta(minutes=30), warmup_fraction=1 / 3)
    assert middle == (began + timedelta(minutes=10), began + timedelta(minutes=20))
    assert last == (began + timedelta(minutes=20), began + timedelta(minutes=30))
