"""The watch's arithmetic: when figures count as worse, p99 from TF Serving's histograms."""

from __future__ import annotations

import pytest

from tfx_serving_ext.publish.push_config import PushConfigError, WatchThresholds
from tfx_serving_ext.publish.watch import judge
from tfx_serving_ext.publish.watch_figures import SideFigures, histogram_quantile
from tfx_serving_ext.publish.watch_metrics import MetricsSnapshot, parse_snapshot

# As TF Serving exports it: counters without _total, latency in microseconds.
EXPOSITION = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="OK"} 90
:tensorflow:serving:request_count{model_name="m",status="INVALID_ARGUMENT"} 10
:tensorflow:serving:request_count{model_name="other",status="OK"} 1000
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_bucket{model_name="m",API="Predict",entrypoint="GRPC",le="1000"} 40
:tensorflow:serving:request_latency_bucket{model_name="m",API="Predict",entrypoint="GRPC",le="2000"} 60
:tensorflow:serving:request_latency_bucket{model_name="m",API="Predict",entrypoint="GRPC",le="+Inf"} 60
:tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="1000"} 0
:tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="2000"} 30
:tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="+Inf"} 30
"""  # noqa: E501 (exposition lines are as long as TF Serving writes them)


def side(latency_ms: float, requests: int, errors: int = 0) -> SideFigures:
    figures = SideFigures()
    for i in range(requests):
        figures.record(latency_ms / 1000, "INTERNAL: boom" if i < errors else None)
    return figures


def test_metrics_text_becomes_the_models_figures():
    figures = parse_snapshot(EXPOSITION, "m").figures()
    assert (figures.requests, figures.errors) == (100, 10)
    assert figures.error_messages == {"INVALID_ARGUMENT": 10}
    # 40 of 90 successful requests under 1 ms, all under 2 ms (both entrypoints added up).
    assert figures.latency_buckets_ms == {1.0: 40, 2.0: 90, float("inf"): 90}
    assert figures.latency_ms(0.5) == pytest.approx(1.0 + (45 - 40) / 50)


def test_growth_since_a_snapshot_and_a_restarted_replica():
    before = MetricsSnapshot({"OK": 90.0}, {1000.0: 40.0})
    now = MetricsSnapshot({"OK": 95.0, "INTERNAL": 5.0}, {1000.0: 45.0})
    assert now.since(before).requests_by_status == {"OK": 5.0, "INTERNAL": 5.0}
    restarted = MetricsSnapshot({"OK": 3.0}, {1000.0: 3.0})
    assert restarted.since(before).requests_by_status == {"OK": 3.0}


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {1.0: 0.0, 2.0: 50.0, 4.0: 100.0, float("inf"): 100.0}
    assert histogram_quantile(buckets, 0.5) == pytest.approx(2.0)
    assert histogram_quantile(buckets, 0.99) == pytest.approx(2.0 + 2.0 * 49 / 50)
    assert histogram_quantile({2.0: 1.0, float("inf"): 2.0}, 0.99) == 2.0
    assert histogram_quantile({}, 0.99) is None


def test_errors_are_judged_once_there_are_enough_requests():
    thresholds = WatchThresholds(max_error_rate=0.05, min_requests=10)
    assert judge(side(1, 5, errors=1), side(1, 50), thresholds, "x", latency=False) == []
    [reason] = judge(side(1, 10, errors=1), side(1, 50), thresholds, "x", latency=False)
    assert "error rate 10.0% (1/10) against 0.0% (0/50)" in reason
    assert "INTERNAL: boom" in reason
    # The previous version erred as often: not worse.
    assert judge(side(1, 10, errors=1), side(1, 50, 5), thresholds, "x", latency=False) == []


def test_latency_is_judged_at_the_end_against_the_previous_p99():
    thresholds = WatchThresholds(max_p99_ratio=2.0, ratio_slack_ms=2.0, min_requests=10)
    slow, fast = side(10.0, 20), side(3.0, 20)
    assert judge(slow, fast, thresholds, "x", latency=False) == []
    [reason] = judge(slow, fast, thresholds, "x", latency=True)
    assert "p99 10.0 ms against 3.0 ms, above 2x + 2 ms" in reason
    assert judge(side(7.9, 20), fast, thresholds, "x", latency=True) == []
    ceiling = WatchThresholds(max_p99_latency_ms=5.0, min_requests=10)
    assert "above the ceiling 5 ms" in judge(slow, SideFigures(), ceiling, "x", latency=True)[0]


def test_thresholds_refuse_nonsense():
    with pytest.raises(PushConfigError, match="max_error_rate must be within"):
        WatchThresholds(max_error_rate=5)
    with pytest.raises(PushConfigError, match="max_p99_ratio must be >= 1"):
        WatchThresholds(max_p99_ratio=0.5)
