"""A watch that could see nothing is refused before anything is published.

Without requests to replay (no requests file, no warmup file, or `watch_replay` off) and without
any replica's request metrics (a gRPC fleet without `metrics_port`, or replicas whose Prometheus
metrics are off), the watch used to end inconclusive and the stable label still moved to the
unwatched version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.fleet.conftest import MODEL, NOISY_MACHINE_THRESHOLDS, newest_available, write_config
from tfx_serving_ext.checks.warmup import warmup_file_path
from tfx_serving_ext.cli import main
from tfx_serving_ext.commands._exit_codes import EXIT_REFUSED
from tfx_serving_ext.protocol.model_config import read_version_labels
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish import volume
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume
from tfx_serving_ext.publish.push_config import PushConfigError


def without_warmup(model_dir: Path, copy: Path) -> Path:
    """Returns a copy of `model_dir` without its warmup file (a model exported without one)."""
    shutil.copytree(model_dir, copy)
    warmup_file_path(copy).unlink()
    return copy


def blind(served, **overrides) -> VolumePushConfig:
    settings = dict(
        base_directory=str(served.base),
        model_name=MODEL,
        fleet=served.grpc,
        verify_timeout_seconds=60,
        watch_seconds=2,
        watch_interval_seconds=0.2,
        watch_replay=False,
    )
    settings.update(overrides)
    return VolumePushConfig(**settings)


def assert_nothing_published(fleet, config_text: str) -> None:
    assert sorted(list_versions(fleet.base)) == [1]
    assert fleet.config_file.read_text() == config_text
    assert [newest_available(a) for a in fleet.grpc] == [1, 1, 1]


@pytest.mark.parametrize("fleet", [{"labels": {"stable": 1}}], indirect=True)
def test_a_grpc_fleet_without_metrics_port_or_replay_is_refused(fleet, fleet_models):
    config_text = fleet.config_file.read_text()
    config = blind(
        fleet, model_config_file=str(fleet.config_file), canary_label="canary",
        stable_label="stable",
    )  # fmt: skip
    with pytest.raises(PushConfigError) as refused:
        push_to_volume(fleet_models.good, config)
    message = str(refused.value)
    assert message.startswith("nothing published: a watch of 2s would see nothing")
    assert "watch_replay is off" in message
    for address in fleet.grpc:
        assert f"{address}: no metrics address" in message
    assert "metrics_port (push --metrics-port)" in message
    assert "watch_requests_file (push --watch-requests)" in message
    assert_nothing_published(fleet, config_text)


def test_replicas_without_prometheus_are_no_metrics_and_the_hint_names_metrics_port(
    fleet, fleet_models
):
    """A REST fleet has a metrics address, but these replicas serve no Prometheus metrics."""
    config_text = fleet.config_file.read_text()
    with pytest.raises(PushConfigError) as refused:
        push_to_volume(fleet_models.good, blind(fleet, fleet=fleet.rest, server_protocol="rest"))
    message = str(refused.value)
    assert "would see nothing" in message
    for rest in fleet.rest:
        hint = f"{rest}/monitoring/prometheus/metrics answered HTTP 404: point metrics_port"
        assert hint in message
    assert "watch_replay" not in message.split("no replica's request metrics")[1]
    assert_nothing_published(fleet, config_text)


def test_the_pusher_refuses_a_blind_watch_with_the_same_message(fleet, fleet_models, tmp_path):
    from tfx.types import standard_artifacts

    from tests.pusher.conftest import model_artifact
    from tfx_serving_ext.components.serving_pusher import executor

    config_text = fleet.config_file.read_text()
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    with pytest.raises(PushConfigError) as refused:
        executor.Executor().Do(
            {"model": [model_artifact(tmp_path / "model", fleet_models.good)]},
            {"pushed_model": [pushed]},
            {"destination": "serving_volume", "push_destination": blind(fleet).to_json()},
        )
    message = str(refused.value)
    assert message.startswith("nothing published: a watch of 2s would see nothing")
    assert "metrics_port (push --metrics-port)" in message
    assert "pushed" not in pushed.mlmd_artifact.custom_properties
    assert_nothing_published(fleet, config_text)


@pytest.fixture
def served_without_warmup(tmp_path, fleet_models):
    """One replica serving version 1, exported without a warmup file, labelled stable."""
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = tmp_path / "serving" / MODEL
    volume.publish_version(without_warmup(fleet_models.v1, tmp_path / "v1"), base)
    config_file = write_config(tmp_path / "models.config", base, {"stable": 1})
    options = ServerOptions(
        model_config_file=str(config_file),
        model_config_file_poll_wait_seconds=0.2,
        file_system_poll_wait_seconds=0.1,
    )
    with ModelServer(options) as server:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(MODEL, version=1, timeout=60)
        yield base, config_file, server.grpc_address


def test_push_watch_of_models_without_warmup_and_no_metrics_port_exits_refused(
    served_without_warmup, fleet_models, tmp_path, capsys
):
    base, config_file, grpc = served_without_warmup
    model = without_warmup(fleet_models.good, tmp_path / "good")
    config_text = config_file.read_text()
    push = ["push", str(model), str(base), "--fleet", grpc, "--model-name", MODEL, "--watch",
            "3s", "--model-config-file", str(config_file), "--canary-label", "canary",
            "--stable-label", "stable"]  # fmt: skip

    assert main(push) == EXIT_REFUSED
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing published: a watch of 3s would see nothing" in errors[0]
    assert (
        "neither version has a warmup file (assets.extra/tf_serving_warmup_requests)" in (errors[0])
    )
    assert "--metrics-port" in errors[0] and "--watch-requests" in errors[0]
    assert captured.out == ""
    assert sorted(list_versions(base)) == [1]
    assert config_file.read_text() == config_text

    # The same model with its warmup file gives the watch requests to replay: it is watched
    # and the stable label moves. (Replaying at a model without warmup would judge its cold
    # first request's latency, not the model.) Its one warmup request is replayed once a
    # sample: 10 s are the 10 requests a verdict needs. Through the library, for the latency
    # slack a busy machine needs (the command has no flag for it).
    config = VolumePushConfig(
        str(base), model_name=MODEL, fleet=[grpc], model_config_file=str(config_file),
        canary_label="canary", stable_label="stable", watch_seconds=10,
        watch_interval_seconds=1, verify_timeout_seconds=60,
        watch_thresholds=NOISY_MACHINE_THRESHOLDS,
    )  # fmt: skip
    result = push_to_volume(fleet_models.good, config)
    assert (result.pushed, result.watch["verdict"]) == (True, "passed"), result.message
    assert read_version_labels(config_file, MODEL)["stable"] == 2
