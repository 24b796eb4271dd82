"""The canary end to end on the embedded server: verdicts, reasons in report.json, cleanup."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading

import pytest
from tfx.proto import infra_validator_pb2

from tfx_serving_ext.canary.run import CanaryConfig, CanaryInterrupted, run_canary

FAST = infra_validator_pb2.ValidationSpec(max_loading_time_seconds=60, num_tries=1)


def _config(**overrides) -> CanaryConfig:
    return CanaryConfig(**{"num_requests": 60, "concurrency": 4, **overrides})


def _report(tmp_path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())


def assert_port_closed(endpoint: str) -> None:
    host, port = endpoint.rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=1).close()


def test_candidate_equal_to_baseline_is_blessed(canary_models, penguin_records, tmp_path):
    result = run_canary(
        canary_models["good"],
        baseline_dir=canary_models["good"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(),
        validation_spec=FAST,
    )
    report = _report(tmp_path)
    assert result.blessed and report["verdict"]["blessed"]
    assert report["mode"] == "compare"
    checks = {c["name"]: c for c in report["verdict"]["checks"]}
    assert checks["error_rate"]["value"] == 0.0
    assert checks["top_class_agreement[serving_default/probabilities]"]["value"] == 1.0
    assert report["latency_ms"]["candidate"]["count"] == 60
    assert report["latency_ms"]["baseline"]["count"] == 60
    assert len(report["requests"]) == 120
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    assert_port_closed(report["backend"]["endpoint"])


def test_slower_candidate_is_refused_for_latency(canary_models, penguin_records, tmp_path):
    result = run_canary(
        canary_models["slow"],
        baseline_dir=canary_models["good"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(num_requests=40),
        validation_spec=FAST,
    )
    reasons = _report(tmp_path)["verdict"]["reasons"]
    assert not result.blessed
    assert any("p50 latency" in r and "the baseline's" in r for r in reasons), reasons
    # The outputs are the penguin's own: only latency refuses it.
    assert not any("top class" in r for r in reasons)


def test_disagreeing_candidate_is_refused_for_agreement(canary_models, penguin_records, tmp_path):
    result = run_canary(
        canary_models["disagree"],
        baseline_dir=canary_models["good"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(),
        validation_spec=FAST,
    )
    report = _report(tmp_path)
    assert not result.blessed
    assert report["verdict"]["reasons"] == [
        "serving_default/probabilities: top class identical to the baseline on 0.0% of "
        "examples (minimum 50.0%)"  # the default floor: wholesale disagreement still refuses
    ]
    [agreement] = report["comparison"]["agreements"]
    assert agreement["top_class_agreement"] == 0.0 and agreement["pairs"] == 60


def test_candidate_that_fails_to_load_is_refused_with_the_server_error(
    canary_models, penguin_records, tmp_path
):
    result = run_canary(
        canary_models["broken"],
        baseline_dir=canary_models["good"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(),
        validation_spec=FAST,
    )
    report = _report(tmp_path)
    assert not result.blessed
    [reason] = report["verdict"]["reasons"]
    assert reason.startswith("the candidate did not load")
    assert "saved_model.pb cannot be parsed" in reason
    assert "saved_model.pb cannot be parsed" in (tmp_path / "server.log").read_text()
    assert len(report["attempts"]) == 1  # a broken model is not retried
    assert_port_closed(report["backend"]["endpoint"])


def test_server_never_available_is_refused_after_the_deadline(
    canary_models, penguin_records, tmp_path
):
    spec = infra_validator_pb2.ValidationSpec(max_loading_time_seconds=2, num_tries=2)
    result = run_canary(
        canary_models["slow_loading"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(),
        validation_spec=spec,
    )
    report = _report(tmp_path)
    assert not result.blessed
    assert "was not AVAILABLE after 2 attempt(s)" in report["verdict"]["reasons"][0]
    assert [a["attempt"] for a in report["attempts"]] == [1, 2]
    assert all("DEADLINE_EXCEEDED" in a["error"] for a in report["attempts"])
    assert (tmp_path / "server.log").is_file()
    assert_port_closed(report["backend"]["endpoint"])


def test_candidate_that_got_no_request_is_not_blessed(canary_models, penguin_records, tmp_path):
    # The time bound runs out before the first measured request: nothing was measured.
    result = run_canary(
        canary_models["good"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(max_seconds=1e-9),
        validation_spec=FAST,
    )
    report = _report(tmp_path)
    assert not result.blessed
    [reason] = report["verdict"]["reasons"]
    assert reason.startswith("no request reached the candidate: nothing about it was measured")
    assert "time bound of 1e-09 s reached after 0 of 60 requests" in reason


def test_no_examples_is_load_only_and_says_so(canary_models, tmp_path):
    result = run_canary(
        canary_models["good"], output_dir=tmp_path, config=_config(), validation_spec=FAST
    )
    report = _report(tmp_path)
    assert result.blessed
    assert report["mode"] == "load_only"
    assert any("load-only" in note for note in report["verdict"]["notes"])
    assert "requests" not in report and report["candidate"]["version"] == 1


def test_baseline_with_other_signature_skips_the_comparison_with_reason(
    canary_models, penguin_records, tmp_path
):
    result = run_canary(
        canary_models["good"],
        baseline_dir=canary_models["renamed"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(num_requests=20),
        validation_spec=FAST,
    )
    report = _report(tmp_path)
    assert result.blessed
    [plan] = report["comparison"]["signatures"]
    assert not plan["compared"] and "inputs differ" in plan["reason"]
    assert any("not compared with the baseline" in n for n in report["verdict"]["notes"])
    assert "baseline" not in report["latency_ms"]  # nothing was sent that it cannot take


def test_sigterm_stops_the_server_and_propagates(canary_models, penguin_records, tmp_path):
    """SIGTERM mid-traffic: CanaryInterrupted, handler restored; the autouse fixture checks
    that the server's port is closed."""
    handler_before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(CanaryInterrupted):
            run_canary(
                canary_models["good"],
                examples=penguin_records,
                output_dir=tmp_path,
                config=_config(num_requests=10_000_000, max_seconds=120),
                validation_spec=FAST,
            )
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGTERM) is handler_before
    assert not (tmp_path / "report.json").exists()  # an interrupted canary judges nothing


def test_subprocess_backend_blesses_and_leaves_no_process(canary_models, penguin_records, tmp_path):
    result = run_canary(
        canary_models["good"],
        baseline_dir=canary_models["good"],
        examples=penguin_records,
        output_dir=tmp_path,
        config=_config(num_requests=30, backend="embedded-subprocess"),
        validation_spec=infra_validator_pb2.ValidationSpec(
            max_loading_time_seconds=120, num_tries=1
        ),
    )
    report = _report(tmp_path)
    assert result.blessed, report["verdict"]
    assert report["backend"]["description"].startswith("EmbeddedSubprocessBackend(pid=")
    assert_port_closed(report["backend"]["endpoint"])


def test_baseline_that_does_not_load_refuses_unless_baseline_thresholds_are_off(
    canary_models, penguin_records, tmp_path
):
    """No threshold against the baseline passes on a comparison that was never made."""
    import shutil

    from tests.support.failing_warmup import plant_failing_warmup_request

    baseline = tmp_path / "baseline"
    shutil.copytree(canary_models["good"], baseline)
    plant_failing_warmup_request(baseline)

    strict = run_canary(
        canary_models["good"],
        baseline_dir=baseline,
        examples=penguin_records,
        output_dir=tmp_path / "strict",
        config=_config(),
        validation_spec=FAST,
    )
    assert not strict.blessed
    (reason,) = _report(tmp_path / "strict")["verdict"]["reasons"]
    assert "the baseline (what serves now) did not become available" in reason

    absolute_only = {
        "max_p50_ratio": None,
        "max_p99_ratio": None,
        "min_top_class_agreement": None,
        "max_mean_abs_diff": None,
    }
    relaxed = run_canary(
        canary_models["good"],
        baseline_dir=baseline,
        examples=penguin_records,
        output_dir=tmp_path / "relaxed",
        config=_config(thresholds=absolute_only),
        validation_spec=FAST,
    )
    assert relaxed.blessed
    notes = _report(tmp_path / "relaxed")["verdict"]["notes"]
    assert any("the baseline was not available" in n for n in notes), notes
