"""The endpoint backend against a running server that polls a volume (the embedded server)."""

from __future__ import annotations

import json

from tfx.proto import infra_validator_pb2

from tfx_serving_ext.canary.run import CanaryConfig, run_canary
from tfx_serving_ext.publish import volume
from tfx_serving_ext.server import ModelServer, ServerOptions


def test_candidate_published_to_the_volume_is_compared_with_what_serves(
    canary_models, penguin_records, tmp_path
):
    base = tmp_path / "volume" / "penguin"
    volume.publish_version(canary_models["good"], base)  # version 1: what serves now
    options = ServerOptions(
        model_name="penguin",
        model_base_path=str(base),
        model_version_policy_num_versions=2,
        file_system_poll_wait_seconds=0.2,
        enable_rest=False,
    )
    with ModelServer(options) as server:
        result = run_canary(
            canary_models["disagree"],
            examples=penguin_records,
            output_dir=tmp_path / "report",
            config=CanaryConfig(
                num_requests=30,
                backend="endpoint",
                endpoint_address=server.grpc_address,
                endpoint_base_path=str(base),
            ),
            serving_spec=infra_validator_pb2.ServingSpec(model_name="penguin"),
            validation_spec=infra_validator_pb2.ValidationSpec(
                max_loading_time_seconds=60, num_tries=1
            ),
        )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["candidate"]["target"] == "penguin@2"
    assert report["baseline"]["target"] == "penguin@1"
    assert not result.blessed
    assert "top class identical to the baseline on 0.0%" in report["verdict"]["reasons"][0]
    # The candidate was taken off the volume again: the fleet is back on version 1.
    assert sorted(volume.list_versions(base)) == [1]
