"""Issue 18's server limits, set through ServerOptions and `serve` flags, and enforced.

Each limit is set small and crossed by one request: the request gets INVALID_ARGUMENT,
RESOURCE_EXHAUSTED, 413 or 503 with a message that says which limit, and never the server's
stack or paths; the server keeps answering the next request.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.server.conftest import HPT, publish
from tests.server.served_subprocess import REPO, serve_subprocess
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.commands import _serve_flags
from tfx_serving_ext.protocol.errors import ServingError
from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto
from tfx_serving_ext.server import ModelServer, ServerOptions


def post(url: str, body: bytes, timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def assert_no_server_detail(message: str, base) -> None:
    assert "Traceback" not in message and ".py" not in message
    assert str(base) not in message and str(REPO) not in message


def predict_request(values, signature_name: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HPT
    request.model_spec.signature_name = signature_name
    ndarray_to_tensor_proto(np.asarray(values, dtype=np.float32), request.inputs["x"])
    return request


@pytest.fixture(scope="module")
def hpt_base(tmp_path_factory, half_plus_two_dir):
    base = tmp_path_factory.mktemp("limits") / HPT
    publish(half_plus_two_dir, base, 123, name="00000123")
    return base


@pytest.fixture(scope="module")
def limited(hpt_base):
    options = ServerOptions(
        model_name=HPT,
        model_base_path=str(hpt_base),
        wait_for_initial_models=True,
        request_max_elements=8,
        grpc_max_message_bytes=4096,
        rest_api_max_body_bytes=2048,
        rest_api_max_connections=3,
        rest_api_header_timeout_seconds=0.5,
    )
    server = ModelServer(options).start()
    try:
        yield server
    finally:
        server.stop()


def test_request_max_elements_refuses_a_larger_predict_over_both_apis(limited, hpt_base):
    with ServingClient(limited.grpc_address) as client:
        assert client.raw_predict(predict_request([1.0] * 8)).outputs["y"].float_val[0] == 2.5
        with pytest.raises(ServingError) as info:
            client.raw_predict(predict_request([1.0] * 9))
    assert info.value.code == "INVALID_ARGUMENT"
    assert "at most 8 elements" in info.value.message
    assert_no_server_detail(info.value.message, hpt_base)
    body = json.dumps({"instances": [1.0] * 9}).encode()
    status, answer = post(f"{limited.rest_url}/v1/models/{HPT}:predict", body)
    assert status == 400 and "at most 8 elements" in answer["error"]
    assert_no_server_detail(answer["error"], hpt_base)


def test_grpc_max_message_bytes_refuses_a_larger_message_before_parsing(limited):
    request = predict_request([1.0], signature_name="s" * 5000)
    with grpc.insecure_channel(limited.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4096" in info.value.details()
        assert stub.Predict(predict_request([2.0]), timeout=10).outputs["y"].float_val[0] == 3.0


def test_rest_max_body_bytes_is_413_naming_the_limit(limited):
    body = json.dumps({"instances": [1.0], "pad": "x" * 3000}).encode()
    status, answer = post(f"{limited.rest_url}/v1/models/{HPT}:predict", body)
    assert status == 413
    assert "2048 bytes" in answer["error"]


def test_rest_connection_cap_and_header_timeout(limited):
    port = int(limited.rest_url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            extra.sendall(f"GET /v1/models/{HPT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
        # The idle connections sent no headers: each is closed after the 0.5 s header timeout.
        for connection in idle:
            connection.settimeout(5)
            assert connection.recv(1) == b""
    finally:
        for connection in idle:
            connection.close()
    time.sleep(0.1)
    with urllib.request.urlopen(f"{limited.rest_url}/v1/models/{HPT}", timeout=10) as response:
        assert response.status == 200


@pytest.mark.parametrize(("streams", "batched_together"), [(0, True), (1, False)])
def test_grpc_max_concurrent_streams_holds_calls_beyond_it(
    tmp_path, hpt_base, streams, batched_together
):
    """Two calls at once on one connection: with one stream allowed, the second waits.

    Batching (batches of 2, 1 s timeout) shows it: two calls that reach the server together fill
    a batch and run at once; when the second cannot start, the first waits out the timeout alone
    and the second after it, about 2 s in all.
    """
    parameters = tmp_path / "batching.pbtxt"
    parameters.write_text(
        "max_batch_size { value: 2 } batch_timeout_micros { value: 1000000 } "
        "num_batch_threads { value: 1 }\n"
    )
    options = ServerOptions(
        model_name=HPT,
        model_base_path=str(hpt_base),
        wait_for_initial_models=True,
        enable_batching=True,
        batching_parameters_file=str(parameters),
        grpc_max_concurrent_streams=streams,
    )
    with ModelServer(options) as server, grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        grpc.channel_ready_future(channel).result(timeout=10)
        start = time.monotonic()
        calls = [stub.Predict.future(predict_request([float(i)]), timeout=30) for i in range(2)]
        answers = [call.result().outputs["y"].float_val[0] for call in calls]
        elapsed = time.monotonic() - start
    assert answers == [2.0, 2.5]
    if batched_together:
        assert elapsed < 1.9, f"two calls at once took {elapsed:.2f} s"
    else:
        assert elapsed >= 1.9, f"the second call did not wait for a stream ({elapsed:.2f} s)"


def test_own_flags_default_to_server_options_defaults():
    defaults = {field.name: field.default for field in dataclasses.fields(ServerOptions)}
    own = {n: f for n, f in _serve_flags.FLAGS.items() if f.kind == _serve_flags.OURS}
    assert own, "serve has no limit flags"
    for name, flag in own.items():
        assert name in defaults, f"--{name} is not a ServerOptions field"
        assert flag.default == defaults[name], f"--{name} defaults differ"
    assert defaults["rest_api_max_body_bytes"] == 64 * 2**20


def test_serve_flags_set_the_limits_and_metrics(tmp_path, half_plus_two_dir):
    monitoring = tmp_path / "monitoring.pbtxt"
    monitoring.write_text("prometheus_config { enable: true }\n")
    flags = (
        "--request_max_elements=4",
        "--rest_api_max_body_bytes=1000",
        f"--monitoring_config_file={monitoring}",
    )
    with serve_subprocess(half_plus_two_dir, tmp_path / HPT, HPT, flags) as served:
        url = served.rest_url
        # serve opens its ports once the model is AVAILABLE, as tensorflow_model_server does.
        predict_url = f"{url}/v1/models/{HPT}:predict"
        status, answer = post(predict_url, json.dumps({"instances": [1.0] * 5}).encode())
        assert status == 400 and "at most 4 elements" in answer["error"]
        assert post(predict_url, json.dumps({"instances": [1.0] * 4}).encode())[0] == 200
        status, answer = post(predict_url, b'{"instances": [' + b"1.0, " * 300 + b"1.0]}")
        assert status == 413 and "1000 bytes" in answer["error"]
        with urllib.request.urlopen(f"{url}/monitoring/prometheus/metrics", timeout=10) as page:
            text = page.read().decode()
        assert f':tensorflow:serving:request_count{{model_name="{HPT}",status="OK"}} 1' in text
        assert (
            f':tensorflow:serving:request_count{{model_name="{HPT}",status="INVALID_ARGUMENT"}} 1'
            in text
        )
