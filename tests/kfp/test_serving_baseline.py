"""The baseline as what serves now: read off the serving volume, or asked of a real server.

The server is the project's embedded TF-Serving-compatible server on loopback (nothing mocked).
"""

from __future__ import annotations

import shutil

import pytest

from tfx_serving_ext.components.serving_baseline import (
    SOURCE_SERVER,
    SOURCE_VOLUME,
    ServingBaseline,
    ServingBaselineError,
    find_serving_now,
)

MODEL = "m"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from tfx_serving_ext.testing.half_plus_two import build_half_plus_two

    return build_half_plus_two(tmp_path_factory.mktemp("hpt") / "model")


def _version(base, number, saved_model):
    shutil.copytree(saved_model, base / str(number))


def test_no_volume_yet_means_a_first_deployment(tmp_path):
    assert find_serving_now(ServingBaseline(base_directory=str(tmp_path / "none"))) is None


def test_the_newest_complete_version_on_the_volume_is_the_baseline(tmp_path, saved_model):
    base = tmp_path / "serving"
    _version(base, 1, saved_model)
    _version(base, 3, saved_model)
    (base / "7").mkdir()  # a half-copied version without saved_model.pb: never a baseline
    (base / ".staging-8").mkdir()
    now = find_serving_now(ServingBaseline(base_directory=str(base)))
    assert (now.version, now.directory, now.source) == (3, base / "3", SOURCE_VOLUME)


def test_with_a_server_the_baseline_is_the_version_it_reports_available(tmp_path, saved_model):
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = tmp_path / "serving"
    _version(base, 1, saved_model)
    server = ModelServer(
        ServerOptions(
            model_name=MODEL,
            model_base_path=str(base),
            file_system_poll_wait_seconds=0.1,
            enable_model_warmup=False,
        )
    )
    server.start()
    try:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(MODEL, version=1, timeout=60)
        # Version 2 lands on disk but is not loaded yet when asked: what serves is still 1.
        (base / "2").mkdir()
        config = ServingBaseline(
            base_directory=str(base), model_name=MODEL, server_address=server.grpc_address
        )
        now = find_serving_now(config)
        assert (now.version, now.directory, now.source) == (1, base / "1", SOURCE_SERVER)
        # A volume that is not the one the server polls is an error, not a silent guess.
        other = ServingBaseline(
            base_directory=str(tmp_path / "other"),
            model_name=MODEL,
            server_address=server.grpc_address,
        )
        with pytest.raises(ServingBaselineError, match="version 1"):
            find_serving_now(other)
        unknown = ServingBaseline(
            base_directory=str(base), model_name="nope", server_address=server.grpc_address
        )
        assert find_serving_now(unknown) is None
    finally:
        server.stop()


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    config = ServingBaseline(
        base_directory=str(tmp_path),
        model_name=MODEL,
        server_address="127.0.0.1:1",
        timeout_seconds=2,
    )
    with pytest.raises(ServingBaselineError, match="Cannot ask the model server"):
        find_serving_now(config)


def test_configuration_round_trips_and_refuses_unknown_keys():
    config = ServingBaseline(base_directory="/serving/p", model_name="p", server_address="h:8500")
    assert ServingBaseline.from_value(config.to_json()) == config
    assert ServingBaseline.from_value("") is None
    with pytest.raises(ValueError, match="Unknown ServingBaseline keys"):
        ServingBaseline.from_value({"base_directory": "/s", "adress": "h:1"})
    with pytest.raises(ValueError, match="model_name"):
        ServingBaseline(base_directory="/s", server_address="h:1")
