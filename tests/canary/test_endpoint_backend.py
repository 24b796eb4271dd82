"""The endpoint backend against a running fleet (the embedded server on loopback).

A client keeps calling the live model by name the whole time: it must only ever be answered
by the version that served before the canary, without a single error, whether the candidate
is judged, refused or fails to load; afterwards the fleet holds exactly the models it had.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tfx.proto import infra_validator_pb2

from tfx_serving_ext.canary.backends.endpoint import CANARY_DIR
from tfx_serving_ext.canary.run import CanaryConfig, run_canary
from tfx_serving_ext.checks.requests import build_requests
from tfx_serving_ext.client.client import ServingClient, ServingError
from tfx_serving_ext.protocol.model_config import model_server_config, write_model_server_config
from tfx_serving_ext.protocol.saved_model import read_signature_defs
from tfx_serving_ext.publish import volume
from tfx_serving_ext.server import ModelServer, ServerOptions


class LiveTraffic:
    """Calls the live model by name in a loop until stopped; records versions and errors."""

    def __init__(self, address: str, model_dir: Path, record: bytes):
        signatures = read_signature_defs(model_dir, ["serve"])
        [self._request] = build_requests(signatures, [record], "penguin", ["serving_default"])
        self._client = ServingClient(address, timeout=10)
        self._stop = threading.Event()
        self.versions: dict[int, int] = {}
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._client.raw_predict(self._request.request)
                version = response.model_spec.version.value
                self.versions[version] = self.versions.get(version, 0) + 1
            except ServingError as exc:
                self.errors.append(str(exc))
            time.sleep(0.005)

    def __enter__(self) -> LiveTraffic:
        self._client.wait_until_available("penguin", timeout=60)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._client.close()


def _canary(candidate, records, address, base, report_dir, **config):
    return run_canary(
        candidate,
        examples=records,
        output_dir=report_dir,
        config=CanaryConfig(
            num_requests=30,
            backend="endpoint",
            endpoint_address=address,
            endpoint_base_path=str(base),
            **config,
        ),
        serving_spec=infra_validator_pb2.ServingSpec(model_name="penguin"),
        validation_spec=infra_validator_pb2.ValidationSpec(
            max_loading_time_seconds=60, num_tries=1
        ),
    )


def _served_models(address: str, names: list[str]) -> dict[str, list]:
    served = {}
    with ServingClient(address) as client:
        for name in names:
            try:
                served[name] = [(s.version, s.state) for s in client.model_status(name)]
            except ServingError as exc:
                served[name] = exc.code
    return served


def test_live_traffic_sees_only_the_old_version_while_the_candidate_is_judged(
    canary_models, penguin_records, tmp_path
):
    """The fleet serves two models from a config file; the canary adds its own and leaves."""
    base = tmp_path / "volume" / "penguin"
    volume.publish_version(canary_models["good"], base)  # version 1: what serves now
    other = tmp_path / "volume" / "other"
    volume.publish_version(canary_models["good"], other)
    config_file = tmp_path / "models.config"
    write_model_server_config(
        config_file, model_server_config([("penguin", base), ("other", other)])
    )
    options = ServerOptions(
        model_config_file=str(config_file), file_system_poll_wait_seconds=0.2, enable_rest=False
    )
    with ModelServer(options) as server:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available("other", timeout=60)
        with LiveTraffic(server.grpc_address, canary_models["good"], penguin_records[0]) as live:
            time.sleep(0.3)
            before = sum(live.versions.values())
            result = _canary(
                canary_models["disagree"],
                penguin_records,
                server.grpc_address,
                base,
                tmp_path / "report",
                endpoint_model_config_file=str(config_file),
                endpoint_server_version="2.19.1",
            )
            during = sum(live.versions.values()) - before
        after = _served_models(server.grpc_address, ["penguin", "other"])
        with ServingClient(server.grpc_address) as client:
            statuses = client.model_status("penguin")
    assert live.errors == []
    assert list(live.versions) == [1], live.versions
    assert during > 20, f"the live client was answered only {during} times during the canary"
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # The candidate was served and judged under a model name of its own, beside the live model.
    assert report["candidate"]["target"].startswith("penguin-canary-")
    assert report["candidate"]["target"].endswith("@1")
    assert report["candidate"]["version"] == 1
    assert report["baseline"]["target"] == "penguin"
    assert not result.blessed
    assert "top class identical to the baseline on 0.0%" in report["verdict"]["reasons"][0]
    assert report["server"]["address"] == server.grpc_address
    assert report["server"]["server_version"] == "2.19.1"
    # Afterwards: the fleet's own models, nothing else on the volume or in the server.
    assert after == {"penguin": [(1, "AVAILABLE")], "other": [(1, "AVAILABLE")]}
    assert [(s.version, s.state) for s in statuses] == [(1, "AVAILABLE")]
    assert sorted(volume.list_versions(base)) == [1]
    assert not any((base / CANARY_DIR).iterdir())
    target = report["candidate"]["target"].split("@")[0]
    with ModelServer(options) as restarted:  # the config file itself was never touched
        assert _served_models(restarted.grpc_address, [target])[target] == "NOT_FOUND"


def test_a_candidate_that_fails_to_load_is_refused_and_cleaned_up_under_live_traffic(
    canary_models, penguin_records, tmp_path
):
    """The fleet runs with --model_name/--model_base_path (no config file)."""
    base = tmp_path / "volume" / "penguin"
    volume.publish_version(canary_models["good"], base)
    options = ServerOptions(
        model_name="penguin",
        model_base_path=str(base),
        file_system_poll_wait_seconds=0.2,
        max_num_load_retries=1,
        load_retry_interval_seconds=0.1,
        enable_rest=False,
    )
    with ModelServer(options) as server:
        with LiveTraffic(server.grpc_address, canary_models["good"], penguin_records[0]) as live:
            result = _canary(
                canary_models["broken"],
                penguin_records,
                server.grpc_address,
                base,
                tmp_path / "report",
            )
        report = result.report
        target = report["candidate"]["target"].split("@")[0]
        after = _served_models(server.grpc_address, ["penguin", target])
    assert not result.blessed
    assert report["verdict"]["reasons"][0].startswith("the candidate did not load")
    assert report["server"]["server_version"] is None
    assert "version not declared" in report["server"]["description"]
    assert live.errors == [] and list(live.versions) == [1], (live.errors[:3], live.versions)
    assert after["penguin"] == [(1, "AVAILABLE")]
    # Out of the config: unloaded (TF Serving reports a removed model's versions as END).
    assert after[target] in ("NOT_FOUND", [(1, "END")]), after
    assert sorted(volume.list_versions(base)) == [1]
    assert not any((base / CANARY_DIR).iterdir())
