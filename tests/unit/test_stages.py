"""The stage clock: seconds since each record's Kafka timestamp, in fine buckets, rendered as
a Prometheus histogram at scrape time."""

from __future__ import annotations

import pytest
from prometheus_client.core import HistogramMetricFamily

from shared.observability.stages import STAGE_BUCKETS, StageClock


def _samples(family: HistogramMetricFamily) -> dict[tuple[str, str], float]:
    return {
        (sample.name.rsplit("_", 1)[-1], sample.labels.get("le", "")): sample.value
        for sample in family.samples
    }


def test_each_record_is_timed_from_its_own_timestamp_into_cumulative_buckets() -> None:
    clock = StageClock("hop_seconds", "test", ("topic", "stage"))
    now = 1_000.0
    # 0.4 ms, exactly 1 ms (a bound counts as within it), 12 ms, and 20 s (beyond the last).
    clock.observe(("t", "fetched"), now, [999_999.6, 999_999, 999_988, 980_000])
    samples = _samples(clock.family())
    assert samples[("bucket", "0.0005")] == 1
    assert samples[("bucket", "0.001")] == 2
    assert samples[("bucket", "0.015")] == 3
    assert samples[("bucket", "10.0")] == 3
    assert samples[("bucket", "+Inf")] == 4
    assert samples[("count", "")] == 4
    assert samples[("sum", "")] == pytest.approx(0.0004 + 0.001 + 0.012 + 20.0)


def test_series_add_up_and_keep_their_labels_apart() -> None:
    clock = StageClock("hop_seconds", "test", ("topic", "stage"))
    clock.observe(("a", "sent"), 10.0, [9_990])
    clock.observe(("a", "sent"), 11.0, [10_990, 10_980])
    clock.observe(("b", "sent"), 10.0, [])
    family = clock.family()
    counts = {
        sample.labels["topic"]: sample.value
        for sample in family.samples
        if sample.name == "hop_seconds_count"
    }
    assert counts == {"a": 3, "b": 0}
    buckets = [s for s in family.samples if s.name == "hop_seconds_bucket"]
    assert len(buckets) == 2 * (len(STAGE_BUCKETS) + 1)
