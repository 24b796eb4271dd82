"""The load driver against fake targets, the comparison on synthetic answers, the judgement."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from tensorflow.core.protobuf import meta_graph_pb2

from tfx_serving_ext.canary.compare import compare_outputs, plan_comparison
from tfx_serving_ext.canary.judge import CanaryThresholds, ThresholdsError, judge
from tfx_serving_ext.canary.load_driver import RequestRecord, Target, drive_load, latency_summary


class FakeServer:
    """A target that records concurrency, answers with its input, and fails on request 'bad'."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.seen: list[str] = []

    def send(self, request: str) -> dict[str, np.ndarray]:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.seen.append(request)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        if request == "bad":
            raise RuntimeError("the server said no")
        return {"y": np.array([len(request)])}


def test_requests_are_cycled_sent_to_both_sides_and_bounded_by_concurrency():
    candidate, baseline = FakeServer(0.002), FakeServer(0.002)
    requests = ["a", "bb", "ccc"]
    result = drive_load(
        [
            Target("candidate", requests, candidate.send),
            Target("baseline", requests, baseline.send),
        ],
        num_requests=30,
        concurrency=3,
    )
    assert result.requests_issued == 30 and result.stopped_early is None
    assert sorted(candidate.seen) == sorted(requests * 10) == sorted(baseline.seen)
    assert candidate.peak <= 3 and baseline.peak <= 3
    assert [r.index for r in result.for_target("candidate")] == list(range(30))
    assert all(r.outputs["y"][0] == len(requests[r.index % 3]) for r in result.records)


def test_failures_are_recorded_and_none_requests_are_not_sent():
    server = FakeServer()
    result = drive_load(
        [
            Target("candidate", ["ok", "bad"], server.send),
            Target("baseline", ["ok", None], server.send),
        ],
        num_requests=10,
    )
    candidate = result.for_target("candidate")
    assert [r.error for r in candidate[:2]] == [None, "RuntimeError: the server said no"]
    assert len(result.for_target("baseline")) == 5  # request 1, 3, ... not sent there
    assert result.latencies_ms("candidate").size == 5


def test_time_bound_stops_issuing_requests():
    server = FakeServer(0.05)
    result = drive_load(
        [Target("candidate", ["x"], server.send)], num_requests=10_000, max_seconds=0.3
    )
    assert result.requests_issued < 50
    assert "time bound of 0.3 s" in result.stopped_early


def test_latency_summary_percentiles():
    summary = latency_summary(np.arange(1, 101, dtype=float))
    assert summary["count"] == 100 and summary["max"] == 100.0
    assert summary["p50"] == pytest.approx(50.5) and summary["p99"] == pytest.approx(99.01)
    assert latency_summary(np.array([]))["p99"] is None


def _signature(inputs: dict, outputs: dict, method="tensorflow/serving/predict"):
    signature = meta_graph_pb2.SignatureDef(method_name=method)
    for name, dtype in inputs.items():
        signature.inputs[name].dtype = dtype
        signature.inputs[name].name = f"{name}:0"
    for name, dtype in outputs.items():
        signature.outputs[name].dtype = dtype
        signature.outputs[name].name = f"{name}:0"
    return signature


def test_plan_skips_what_does_not_match_with_reasons():
    candidate = {
        "a": _signature({"x": 1}, {"p": 1, "extra": 1}),
        "b": _signature({"x": 1}, {"p": 1}),
        "c": _signature({"x": 1}, {"p": 1}),
    }
    baseline = {"a": _signature({"x": 1}, {"p": 1}), "b": _signature({"x": 9}, {"p": 1})}
    plans = plan_comparison(candidate, baseline, ["a", "b", "c"])
    assert plans["a"].compared and plans["a"].outputs == ["p"]
    assert plans["a"].skipped_outputs == {"extra": "the baseline has no such output"}
    assert not plans["b"].compared and "inputs differ" in plans["b"].reason
    assert not plans["c"].compared and "has no signature 'c'" in plans["c"].reason


def test_agreement_counts_top_classes_and_absolute_differences():
    plans = plan_comparison(
        {"s": _signature({"x": 1}, {"p": 1})}, {"s": _signature({"x": 1}, {"p": 1})}, ["s"]
    )

    def record(index, target, probabilities):
        return RequestRecord(index, target, "s", 0.0, 1.0, outputs={"p": np.array(probabilities)})

    candidate = [record(0, "candidate", [[0.9, 0.1]]), record(1, "candidate", [[0.4, 0.6]])]
    baseline = [record(0, "baseline", [[0.8, 0.2]]), record(1, "baseline", [[0.7, 0.3]])]
    [agreement] = compare_outputs(candidate, baseline, plans)
    assert agreement.pairs == 2 and agreement.top_class_agreement == 0.5
    assert agreement.mean_abs_diff == pytest.approx((0.1 + 0.1 + 0.3 + 0.3) / 4)
    assert agreement.max_abs_diff == pytest.approx(0.3)


def test_judge_applies_each_threshold_and_explains():
    latency = {"p50": 10.0, "p99": 20.0}
    verdict = judge(
        CanaryThresholds(max_p99_latency_ms=15.0, max_p50_ratio=1.5),
        candidate_latency=latency,
        baseline_latency={"p50": 5.0, "p99": 19.0},
        candidate_error_rate=0.0,
    )
    assert not verdict.blessed
    assert verdict.reasons == [
        "candidate p50 latency 10.00 ms is 2.00x the baseline's 5.00 ms (limit 1.50x)",
        "candidate p99 latency 20.00 ms (limit 15.00 ms)",
    ]
    # Within the slack, a large ratio of tiny latencies is noise.
    verdict = judge(
        CanaryThresholds(),
        candidate_latency={"p50": 0.9, "p99": 2.0, "count": 200},
        baseline_latency={"p50": 0.3, "p99": 0.5, "count": 200},
        candidate_error_rate=0.0,
    )
    assert verdict.blessed and len(verdict.checks) == 3


def test_a_p99_of_few_requests_is_not_judged_and_the_verdict_says_so():
    """Over 20 requests a "p99" is the slowest one: a 42 ms hiccup against 16 ms refused a
    candidate identical to its baseline on a busy CI machine."""
    slow_tail = {"p50": 10.0, "p99": 42.0}
    baseline = {"p50": 10.0, "p99": 16.0}
    few = judge(
        CanaryThresholds(),
        candidate_latency=slow_tail | {"count": 20},
        baseline_latency=baseline | {"count": 20},
        candidate_error_rate=0.0,
    )
    assert few.blessed
    assert [c.name for c in few.checks] == ["error_rate", "p50_ratio"]
    assert any("p99 ratio not judged: 20 measured requests" in note for note in few.notes)
    enough = judge(
        CanaryThresholds(),
        candidate_latency=slow_tail | {"count": 500},
        baseline_latency=baseline | {"count": 500},
        candidate_error_rate=0.0,
    )
    assert not enough.blessed and "2.62x the baseline's 16.00 ms" in enough.reasons[0]


def test_thresholds_reject_nonsense():
    with pytest.raises(ThresholdsError, match="unknown thresholds"):
        CanaryThresholds.from_value({"max_p99": 1})
    with pytest.raises(ThresholdsError, match="share between 0 and 1"):
        CanaryThresholds(min_top_class_agreement=95)
    off = CanaryThresholds.from_value('{"max_error_rate": null}')
    assert judge(
        off,
        candidate_latency={"p50": 1.0, "p99": 2.0},
        baseline_latency=None,
        candidate_error_rate=0.5,
    ).blessed


def test_a_candidate_that_answered_nothing_is_refused_even_with_the_error_check_off():
    off = CanaryThresholds(max_error_rate=None)
    verdict = judge(
        off,
        candidate_latency=latency_summary(np.array([])),
        baseline_latency=None,
        candidate_error_rate=1.0,
    )
    assert not verdict.blessed
    assert verdict.reasons == [
        "the candidate answered none of its requests: nothing about it was measured"
    ]


def _unmeasured_agreements(candidate, baseline):
    plans = plan_comparison(
        {"s": _signature({"x": 1}, {"p": 1})}, {"s": _signature({"x": 1}, {"p": 1})}, ["s"]
    )
    return compare_outputs(candidate, baseline, plans)


def test_a_baseline_that_answered_nothing_does_not_bless_an_uncompared_candidate():
    ok = [
        RequestRecord(i, "candidate", "s", 0.0, 1.0, outputs={"p": np.array([[0.9, 0.1]])})
        for i in range(3)
    ]
    failed = [RequestRecord(i, "baseline", "s", 0.0, 0.1, error="NOT_FOUND") for i in range(3)]
    verdict = judge(
        CanaryThresholds(),
        candidate_latency={"p50": 1.0, "p99": 1.0},
        baseline_latency=latency_summary(np.array([])),
        candidate_error_rate=0.0,
        baseline_error_rate=1.0,
        agreements=_unmeasured_agreements(ok, failed),
    )
    assert not verdict.blessed
    assert verdict.reasons[0].startswith("the baseline answered none of its requests")
    assert verdict.reasons[1] == (
        "s/p: not compared with the baseline (no request succeeded on both sides)"
    )
    # With every comparison switched off, only the candidate's own measurements count.
    alone = CanaryThresholds(max_p50_ratio=None, max_p99_ratio=None, min_top_class_agreement=None)
    assert judge(
        alone,
        candidate_latency={"p50": 1.0, "p99": 1.0},
        baseline_latency=None,
        candidate_error_rate=0.0,
        baseline_error_rate=1.0,
        agreements=_unmeasured_agreements(ok, failed),
    ).blessed


def test_outputs_whose_shape_changed_are_refused_not_skipped():
    candidate = [
        RequestRecord(0, "candidate", "s", 0.0, 1.0, outputs={"p": np.array([[0.2, 0.3, 0.5]])})
    ]
    baseline = [RequestRecord(0, "baseline", "s", 0.0, 1.0, outputs={"p": np.array([[0.5, 0.5]])})]
    verdict = judge(
        CanaryThresholds(),
        candidate_latency={"p50": 1.0, "p99": 1.0},
        baseline_latency={"p50": 1.0, "p99": 1.0},
        candidate_error_rate=0.0,
        baseline_error_rate=0.0,
        agreements=_unmeasured_agreements(candidate, baseline),
    )
    assert not verdict.blessed
    assert verdict.reasons == [
        "s/p: not compared with the baseline (shapes differ: candidate (1, 3), baseline (1, 2))"
    ]
