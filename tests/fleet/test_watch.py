"""The post-push watch: a version that errors on traffic after the swap is rolled back in time."""

from __future__ import annotations

import json
import time

import pytest

from tests.fleet.conftest import (
    MODEL,
    NOISY_MACHINE_THRESHOLDS,
    PinnedClients,
    newest_available,
)
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume


def watched(served, **overrides) -> VolumePushConfig:
    settings = dict(
        base_directory=str(served.base),
        model_name=MODEL,
        fleet=served.grpc,
        verify_timeout_seconds=60,
        watch_seconds=20,
        watch_interval_seconds=0.2,
        watch_thresholds=NOISY_MACHINE_THRESHOLDS,
    )
    settings.update(overrides)
    return VolumePushConfig(**settings)


def test_version_erroring_on_replayed_traffic_is_rolled_back_within_the_window(fleet, fleet_models):
    """v2 loads and warms up (x = -1) but fails on x = 2, which v1 was warmed with."""
    samples = []
    with PinnedClients(fleet.grpc, version=1) as pinned:
        result = push_to_volume(
            fleet_models.errors_on_traffic, watched(fleet), on_watch=samples.append
        )
    watch = result.watch
    assert (result.pushed, result.rolled_back, result.verification) == (False, True, "available")
    assert watch["verdict"] == "failed"
    assert watch["elapsed_seconds"] < 20  # stopped at the first bad sample, not at the end
    assert result.message.startswith("the watch rolled version 2 back: replayed requests")
    assert "x must not be positive" in result.message
    # v1's warmup record (x = 2) fails at v2, v2's own (x = -1) does not.
    assert watch["replayed"]["new"]["error_rate"] == 0.5
    assert watch["replayed"]["previous"]["errors"] == 0
    assert watch["replayed"]["previous"]["requests"] == watch["replayed"]["new"]["requests"]
    assert set(watch["replicas"]) == set(fleet.grpc)
    assert [r["state"] for r in result.replicas] == ["ROLLED_BACK"] * 3
    assert sorted(list_versions(fleet.base)) == [1]
    assert [newest_available(a) for a in fleet.grpc] == [1, 1, 1]
    assert samples and samples[-1].verdict == "failed"
    assert pinned.failures == []


def test_good_version_passes_the_watch_and_stays(fleet, fleet_models):
    result = push_to_volume(fleet_models.good, watched(fleet, watch_seconds=1.5))
    assert (result.pushed, result.rolled_back) == (True, False)
    assert result.watch["verdict"] == "passed" and result.watch["reasons"] == []
    assert result.watch["elapsed_seconds"] >= 1.5
    replayed = result.watch["replayed"]
    # v1's and v2's warmup records (x = 2 each), 4 a sample per version and replica.
    assert replayed["new"]["requests"] >= 12 and replayed["new"]["errors"] == 0
    assert replayed["new"]["p99_ms"] is not None
    assert "watch passed" in result.message
    assert [newest_available(a) for a in fleet.grpc] == [2, 2, 2]


def test_pusher_records_the_watch_and_a_rollback_is_a_successful_run(fleet, fleet_models, tmp_path):
    from tfx.types import standard_artifacts

    from tests.pusher.conftest import model_artifact
    from tfx_serving_ext.components.serving_pusher import executor

    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    executor.Executor().Do(
        {"model": [model_artifact(tmp_path / "model", fleet_models.errors_on_traffic)]},
        {"pushed_model": [pushed]},
        {"destination": "serving_volume", "push_destination": watched(fleet).to_json()},
    )
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_int_custom_property("rolled_back") == 1
    assert pushed.get_string_custom_property("watch_verdict") == "failed"
    assert "the watch rolled version 2 back" in pushed.get_string_custom_property(
        "verification_message"
    )
    watch = json.loads(pushed.get_string_custom_property("watch"))
    assert watch["replayed"]["new"]["error_rate"] == 0.5
    replicas = json.loads(pushed.get_string_custom_property("replicas"))
    assert {r["address"]: r["state"] for r in replicas} == dict.fromkeys(fleet.grpc, "ROLLED_BACK")


@pytest.mark.parametrize("fleet", [{"metrics": True}], indirect=True)
def test_watch_reads_the_replicas_metrics_and_rolls_back_on_live_errors(fleet, fleet_models):
    """No replayed traffic: live clients on the latest version start failing after the swap,
    which only each replica's request_count{status} shows (it has no version label)."""
    with PinnedClients(fleet.grpc) as live, PinnedClients(fleet.grpc, version=1) as pinned:
        time.sleep(0.5)  # figures before the swap: successful requests only
        result = push_to_volume(
            fleet_models.errors_on_traffic,
            watched(fleet, fleet=fleet.rest, server_protocol="rest", watch_replay=False),
        )
    watch = result.watch
    assert (result.pushed, result.rolled_back, watch["verdict"]) == (False, True, "failed")
    assert watch["replayed"]["new"]["requests"] == 0
    before, after = watch["metrics"]["before"], watch["metrics"]["after"]
    assert before["requests"] > 0 and before["errors"] == 0
    assert after["errors"] >= 1 and after["error_rate"] > 0.01
    assert "INVALID_ARGUMENT" in after["top_errors"]
    assert "request metrics after the swap vs before it" in result.message
    assert set(watch["replicas"]) == set(fleet.rest)
    assert any(r["metrics_after"]["errors"] for r in watch["replicas"].values())
    assert [newest_available(a) for a in fleet.grpc] == [1, 1, 1]
    assert live.failures  # clients on the latest version did see version 2 fail
    assert pinned.failures == []


def test_watch_replays_the_given_requests_file_and_a_missing_one_publishes_nothing(
    fleet, fleet_models, tmp_path
):
    import numpy as np
    from tensorflow_serving.apis import prediction_log_pb2

    from tfx_serving_ext.checks.warmup import write_warmup_file
    from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto
    from tfx_serving_ext.publish.push_config import PushConfigError

    with pytest.raises(PushConfigError, match="nothing published.*does not exist"):
        push_to_volume(
            fleet_models.good, watched(fleet, watch_requests_file=str(tmp_path / "none"))
        )
    assert sorted(list_versions(fleet.base)) == [1]

    log = prediction_log_pb2.PredictionLog()
    ndarray_to_tensor_proto(np.asarray([5.0], np.float32), log.predict_log.request.inputs["x"])
    requests_file = write_warmup_file(tmp_path / "traffic", [log])
    result = push_to_volume(
        fleet_models.errors_on_traffic, watched(fleet, watch_requests_file=str(requests_file))
    )
    assert (result.pushed, result.watch["verdict"]) == (False, "failed")
    # Only the file's request (x = 5) was replayed: every one failed at version 2.
    assert result.watch["replayed"]["new"]["error_rate"] == 1.0
    assert result.watch["replayed"]["previous"]["errors"] == 0


@pytest.mark.parametrize("fleet", [{"metrics": True}], indirect=True)
def test_a_good_swap_under_live_traffic_passes_a_metrics_watch(fleet, fleet_models):
    with PinnedClients(fleet.grpc) as live:
        time.sleep(0.5)
        result = push_to_volume(
            fleet_models.good,
            watched(
                fleet, fleet=fleet.rest, server_protocol="rest", watch_replay=False,
                watch_seconds=2,
            ),
        )  # fmt: skip
    assert result.pushed and result.watch["verdict"] == "passed"
    after = result.watch["metrics"]["after"]
    assert after["requests"] >= 10 and after["errors"] == 0 and after["p99_ms"] is not None
    assert live.failures == []
    assert {v for _, v, _ in live.answers} == {1, 2}


def test_previous_version_unloaded_by_the_policy_still_lets_the_watch_judge(tmp_path, fleet_models):
    """One server with TF Serving's default policy (latest 1): version 1 is gone once 2 is
    AVAILABLE, so the replays at version 1 are NOT_FOUND; that is no figure, not an error."""
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.publish import volume
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = tmp_path / "serving"
    volume.publish_version(fleet_models.v1, base)
    options = ServerOptions(model_name=MODEL, model_base_path=str(base),
                            file_system_poll_wait_seconds=0.1)  # fmt: skip
    with ModelServer(options) as server:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(MODEL, version=1, timeout=60)
        config = VolumePushConfig(
            str(base), model_name=MODEL, server_address=server.grpc_address,
            watch_seconds=20, watch_interval_seconds=0.2, verify_timeout_seconds=60,
            watch_thresholds=NOISY_MACHINE_THRESHOLDS,
        )  # fmt: skip
        result = push_to_volume(fleet_models.errors_on_traffic, config)
        assert (result.pushed, result.rolled_back) == (False, True)
        watch = result.watch
        assert watch["replicas"][server.grpc_address]["previous_unserved"] is True
        assert watch["replayed"]["previous"]["requests"] == 0
        assert "against 0.0% (0/0)" in watch["reasons"][0]
        assert newest_available(server.grpc_address) == 1
