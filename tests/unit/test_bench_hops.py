"""The benchmark's latency breakdown per hop and its CPU per saga: the arithmetic on the
services' stage histograms (read from /metrics) and on the CPU readings. Pure: the scrape of
a running system is covered by tests/e2e/test_bench_smoke.py."""

from __future__ import annotations

import pytest

from bench.hops import (
    CONSUMER_STAGES,
    HAPPY_PATH,
    RELAY_STAGES,
    Histogram,
    breakdown,
    happy_path_segments,
    happy_path_total,
    histograms_in,
    quantile,
    since,
)
from bench.report import hop_rows
from bench.run import cpu_per_saga, saga_listeners
from shared.observability.metrics import render
from shared.observability.stages import STAGE_BUCKETS, StageClock

INF = float("inf")


def _histogram(cumulative: tuple[float, ...], total: float) -> Histogram:
    return Histogram((0.01, 0.1, INF), cumulative, total)


def test_quantiles_interpolate_within_a_bucket_from_zero() -> None:
    # 10 records up to 10 ms, 10 more up to 100 ms.
    histogram = _histogram((10, 20, 20), 1.0)
    assert quantile(histogram, 0.5) == pytest.approx(0.01)
    assert quantile(histogram, 0.25) == pytest.approx(0.005)
    assert quantile(histogram, 0.75) == pytest.approx(0.055)
    assert quantile(histogram, 0.99) == pytest.approx(0.01 + 0.09 * 9.8 / 10)


def test_a_quantile_in_the_infinite_bucket_is_the_last_bound_and_none_of_nothing() -> None:
    assert quantile(_histogram((0, 1, 4), 9.0), 0.99) == 0.1
    assert quantile(_histogram((0, 0, 0), 0.0), 0.5) is None
    # Empty buckets below the rank are skipped, not interpolated into.
    assert quantile(_histogram((0, 4, 4), 0.2), 0.5) == pytest.approx(0.01 + 0.09 * 2 / 4)


def _page(relay: StageClock, consumer: StageClock, instance: str) -> str:
    labels = {"service": "s", "instance": instance}
    return render([relay.family(), consumer.family()], labels).decode()


def _clocks() -> tuple[StageClock, StageClock]:
    relay = StageClock("sagakit_outbox_stage_seconds", "relay", ("topic", "stage"))
    consumer = StageClock("sagakit_consumer_stage_seconds", "consumer", ("topic", "group", "stage"))
    return relay, consumer


def test_a_metrics_page_gives_each_stage_its_histogram() -> None:
    relay, consumer = _clocks()
    relay.observe(("p-order-created", "sent"), 1.0, [998, 999])  # 2 ms and 1 ms
    consumer.observe(("p-order-created", "p-payment", "committed"), 1.0, [990])  # 10 ms
    found = histograms_in(_page(relay, consumer, "a"))
    sent = found[("p-order-created", "", "sent")]
    assert sent.count == 2 and sent.total == pytest.approx(0.003)
    assert sent.bounds == (*STAGE_BUCKETS, INF)
    committed = found[("p-order-created", "p-payment", "committed")]
    assert committed.count == 1 and committed.total == pytest.approx(0.01)


def test_a_step_is_what_each_instance_observed_since_all_instances_together() -> None:
    key = ("t", "g", "fetched")
    before = {"a": {key: _histogram((1, 2, 2), 0.1)}, "b": {key: _histogram((0, 1, 1), 0.05)}}
    after = {
        "a": {key: _histogram((3, 5, 5), 0.4), ("t", "", "sent"): _histogram((1, 1, 1), 0.001)},
        "b": {key: _histogram((1, 3, 3), 0.2)},
        "c": {key: _histogram((9, 9, 9), 0.09)},  # not read before: left out
    }
    observed = since(before, after)
    assert observed[key].cumulative == (3, 5, 5)
    assert observed[key].total == pytest.approx(0.3 + 0.15)
    assert observed[("t", "", "sent")].count == 1  # a series that appeared during the step


def test_an_instance_restarted_during_the_step_is_left_out() -> None:
    key = ("t", "g", "fetched")
    before = {"a": {key: _histogram((5, 5, 5), 0.1)}, "b": {key: _histogram((0, 0, 0), 0.0)}}
    after = {"a": {key: _histogram((1, 1, 1), 0.01)}, "b": {key: _histogram((2, 2, 2), 0.02)}}
    assert since(before, after)[key].count == 2


def _stages_at(ms: float) -> dict[str, Histogram]:
    return {stage: _histogram((1, 1, 1), ms / 1000) for stage in (*RELAY_STAGES, *CONSUMER_STAGES)}


def test_hops_come_in_the_happy_sagas_order_with_each_stage_in_milliseconds() -> None:
    observed = {}
    for index, (topic, group) in enumerate(reversed(HAPPY_PATH)):
        for stage, histogram in _stages_at(index + 1.0).items():
            is_relay = stage in RELAY_STAGES
            observed[(f"p-{topic}", "" if is_relay else f"p-{group}", stage)] = histogram
    # The timeline group reads order-shipped too: a hop, but not of the happy path.
    observed[("p-order-shipped", "p-order-timeline", "fetched")] = _histogram((2, 2, 2), 0.004)

    hops = breakdown(observed, prefix="p-")
    assert [(h["topic"], h["group"]) for h in hops] == [
        *HAPPY_PATH,
        ("order-shipped", "order-timeline"),
    ]
    assert [h["happy_path_step"] for h in hops] == [0, 1, 2, 3, None]
    first = hops[0]["stages"]
    assert first["sent"] == {"count": 1, "mean_ms": 4.0, "p50_ms": 5.0, "p99_ms": 9.9}
    timeline = hops[-1]["stages"]
    assert timeline["fetched"]["mean_ms"] == 2.0 and timeline["committed"] is None
    # The relay's stages are the topic's, whichever group reads it.
    assert timeline["sent"] == hops[3]["stages"]["sent"]
    assert happy_path_total(hops) == 4.0 + 3.0 + 2.0 + 1.0
    rows = hop_rows(hops)
    assert rows[0][:3] == ["1. order-created -> payment", "1", "4.0/10"]
    assert rows[-1][0] == "order-shipped -> order-timeline" and rows[-1][-1] == "-"


def test_no_total_when_a_happy_hop_is_missing() -> None:
    observed = {("order-created", "payment", "committed"): _histogram((1, 1, 1), 0.005)}
    assert happy_path_total(breakdown(observed)) is None


def test_cpu_per_saga_is_split_into_saga_steps_listeners_and_infrastructure() -> None:
    seconds = {"order": 4.0, "payment-2": 1.0, "analytics": 2.0, "postgres": 3.0, "bench": 6.0}
    cpu = cpu_per_saga(seconds, 1000, frozenset({"analytics"}))

    assert cpu["per_saga_ms_by_part"] == {
        "saga steps": 5.0,
        "listeners": 2.0,
        "infrastructure": 3.0,
    }


def test_a_process_outside_the_system_is_left_out_of_its_cpu() -> None:
    seconds = {"order": 4.0, "notification-receiver": 2.0, "bench": 6.0}
    cpu = cpu_per_saga(seconds, 1000, outside=frozenset({"notification-receiver"}))

    assert (cpu["per_saga_ms"], cpu["outside_cpu_s"]) == (4.0, {"notification-receiver": 2.0})
    assert "notification-receiver" not in cpu["per_saga_ms_by_process"]


def test_the_listeners_are_the_services_that_emit_nothing() -> None:
    assert saga_listeners() == {"analytics", "notification"}


def test_cpu_per_saga_is_the_systems_seconds_without_the_load_generator() -> None:
    cpu = cpu_per_saga({"order": 4.0, "postgres": 3.0, "kafka": 1.0, "bench": 6.0}, 1000)
    assert cpu["system_cpu_s"] == 8.0 and cpu["load_generator_cpu_s"] == 6.0
    assert cpu["per_saga_ms"] == 8.0
    assert list(cpu["per_saga_ms_by_process"].items()) == [
        ("order", 4.0),
        ("postgres", 3.0),
        ("kafka", 1.0),
    ]
    assert cpu_per_saga({"order": 1.0}, 0)["per_saga_ms"] is None


def test_the_happy_paths_time_is_split_into_the_segments_it_waits_for() -> None:
    # Every happy hop alike: sent 2 ms, acknowledged 9 (beside the path), fetched 5, begun 11,
    # locked 12, committed 20, offsets 900 (after the next hop began: not on the path).
    at = {
        "sent": 2.0,
        "acknowledged": 9.0,
        "fetched": 5.0,
        "begun": 11.0,
        "locked": 12.0,
        "committed": 20.0,
        "offset_committed": 900.0,
    }
    observed = {}
    for topic, group in HAPPY_PATH:
        for stage, ms in at.items():
            group_label = "" if stage in RELAY_STAGES else group
            observed[(topic, group_label, stage)] = _histogram((1, 1, 1), ms / 1000)
    hops = breakdown(observed)
    segments = happy_path_segments(hops)
    assert segments == {
        "sent": 8.0,
        "fetched": 12.0,
        "begun": 24.0,
        "locked": 4.0,
        "committed": 32.0,
    }
    assert happy_path_total(hops) == 4 * 20.0
