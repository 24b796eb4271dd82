"""Warmup replay before AVAILABLE, and warmup files that keep a version out of service."""

from __future__ import annotations

import pytest

from tests.server.conftest import predict_log, publish, write_warmup
from tfx_serving_ext.client.client import ServingClient, VersionLoadFailed
from tfx_serving_ext.server import ModelServer, ServerOptions

FAST = {
    "file_system_poll_wait_seconds": 0.1,
    "load_retry_interval_seconds": 0.05,
    "max_num_load_retries": 1,
}


def calls(client, version=None) -> int:
    return int(
        client.predict("counter", {}, signature_name="count", version=version).outputs["calls"]
    )


def test_warmup_requests_run_before_the_version_serves(tmp_path, counter_model_dir):
    base = tmp_path / "base"
    version_dir = publish(counter_model_dir, base, 1)
    logs = [predict_log({"x": [float(i), 1.0]}) for i in range(3)]
    logs.append(predict_log({"x": [1.0]}).__class__())  # a record with no log type: skipped
    write_warmup(version_dir, logs)
    options = ServerOptions(
        model_name="counter",
        model_base_path=str(base),
        num_request_iterations_for_warmup=2,
        **FAST,
    )
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available("counter", timeout=60) == 1
        assert calls(client) == 6  # 3 records x 2 iterations, all before AVAILABLE

    options = ServerOptions(
        model_name="counter", model_base_path=str(base), enable_model_warmup=False, **FAST
    )
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        client.wait_until_available("counter", timeout=60)
        assert calls(client) == 0


@pytest.mark.parametrize(
    ("make_file", "code", "fragment"),
    [
        (
            lambda d: write_warmup(d, [predict_log({"not_an_input": [1.0]})]),
            "INVALID_ARGUMENT",
            "Warmup request 0 (predict_log) failed",
        ),
        (
            lambda d: write_warmup(d, [predict_log({"x": [1.0]})] * 1001),
            "INVALID_ARGUMENT",
            "Number of warmup records exceeds the maximum (1000)",
        ),
        (
            lambda d: write_warmup(d, [predict_log({"x": [1.0]})] * 3).write_bytes(
                b"\x10\x00\x00\x00\x00\x00\x00\x00corrupt-crc-and-payload"
            ),
            "DATA_LOSS",
            "tf_serving_warmup_requests",
        ),
    ],
    ids=["failing-request", "1001-records", "corrupt-file"],
)
def test_bad_warmup_keeps_version_out_of_service(
    tmp_path, counter_model_dir, make_file, code, fragment
):
    base = tmp_path / "base"
    publish(counter_model_dir, base, 1)
    options = ServerOptions(model_name="counter", model_base_path=str(base), **FAST)
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available("counter", timeout=60) == 1
        staging = base / ".staging-2"
        import shutil

        shutil.copytree(counter_model_dir, staging)
        make_file(staging)
        staging.rename(base / "2")
        with pytest.raises(VersionLoadFailed) as info:
            client.wait_until_available("counter", version=2, timeout=30)
        assert info.value.code == code
        assert fragment in info.value.message
        statuses = {s.version: s.state for s in client.model_status("counter")}
        assert statuses == {2: "END", 1: "AVAILABLE"}
        assert client.predict("counter", {"x": [2.0]}).version == 1


def test_exactly_1000_records_is_accepted(tmp_path, counter_model_dir):
    base = tmp_path / "base"
    version_dir = publish(counter_model_dir, base, 1)
    write_warmup(version_dir, [predict_log({"x": [1.0]})] * 1000)
    options = ServerOptions(model_name="counter", model_base_path=str(base), **FAST)
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available("counter", timeout=60) == 1
        assert calls(client) == 1000
