"""Conformance over REST on half-plus-two at version 00000123: routes, JSON formats, errors."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.server.conftest import HPT, example
from tfx_serving_ext.client.client import ServingError


def call(server, method: str, path: str, body: str | bytes | None = None):
    """Returns (HTTP status, content type, decoded JSON body)."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(server.rest_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


def test_status_and_metadata_routes(hpt_server):
    status, content_type, body = call(hpt_server, "GET", f"/v1/models/{HPT}")
    assert (status, content_type) == (200, "application/json")
    assert body == {
        "model_version_status": [
            {
                "version": "123",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert call(hpt_server, "GET", f"/v1/models/{HPT}/versions/123")[2] == body
    status, _, body = call(hpt_server, "GET", f"/v1/models/{HPT}/versions/123/metadata")
    assert status == 200
    assert body["model_spec"]["version"] == "123"
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert signatures["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"


def test_predict_row_and_columnar(hpt_server):
    status, _, body = call(
        hpt_server, "POST", f"/v1/models/{HPT}:predict", '{"instances": [2.0, 3.0, 4.0]}'
    )
    assert (status, body) == (200, {"predictions": [3.0, 3.5, 4.0]})
    status, _, body = call(
        hpt_server,
        "POST",
        f"/v1/models/{HPT}/versions/123:predict",
        '{"signature_name": "serving_default", "inputs": {"x": [[2.0], [4.0]]}}',
    )
    assert (status, body) == (200, {"outputs": [[3.0], [4.0]]})
    status, _, body = call(hpt_server, "POST", f"/v1/models/{HPT}:predict", '{"inputs": [1.0]}')
    assert (status, body) == (200, {"outputs": [2.5]})


def test_classify_and_regress_routes(hpt_server):
    body = '{"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}'
    status, _, answer = call(hpt_server, "POST", f"/v1/models/{HPT}:classify", body)
    assert (status, answer) == (200, {"results": [[["", 3.0]], [["", 4.0]]]})
    body = '{"signature_name": "regress_x_to_y", "examples": [{"x": [2.0]}]}'
    status, _, answer = call(hpt_server, "POST", f"/v1/models/{HPT}:regress", body)
    assert (status, answer) == (200, {"results": [3.0]})
    body = (
        '{"signature_name": "regress_x2_to_y3", "context": {"x2": 4.0}, '
        '"examples": [{"x": 1.0}, {"x": 1.0, "x2": 2.0}]}'
    )
    status, _, answer = call(hpt_server, "POST", f"/v1/models/{HPT}:regress", body)
    assert (status, answer) == (200, {"results": [5.0, 4.0]})


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", f"/v1/models/{HPT}:predict", '{"instances": [1.0', 400, "JSON Parse error"),
        ("POST", f"/v1/models/{HPT}:predict", "[1, 2]", 400, "JSON object"),
        ("POST", f"/v1/models/{HPT}:predict", '{"instances": ["a"]}', 400, "float"),
        ("POST", f"/v1/models/{HPT}:predict", '{"instances": [[1.0], 2.0]}', 400, "tensor"),
        ("POST", f"/v1/models/{HPT}:predict", '{"foo": 1}', 400, '"instances"'),
        (
            "POST",
            f"/v1/models/{HPT}:predict",
            '{"instances": [1.0], "inputs": [1.0]}',
            400,
            "exactly one",
        ),
        (
            "POST",
            f"/v1/models/{HPT}:predict",
            '{"signature_name": "nope", "instances": [1.0]}',
            400,
            'Serving signature key "nope" not found.',
        ),
        ("POST", "/v1/models/nope:predict", '{"instances": [1.0]}', 404, "Latest(nope)"),
        (
            "POST",
            f"/v1/models/{HPT}/versions/5:predict",
            '{"instances": [1.0]}',
            404,
            f"Specific({HPT}, 5)",
        ),
        ("POST", f"/v1/models/{HPT}/labels/stable:predict", '{"instances": [1.0]}', 400, "label"),
        (
            "POST",
            f"/v1/models/{HPT}:classify",
            '{"signature_name": "nope", "examples": [{"x": 1.0}]}',
            400,
            "No signature was found with the name: nope",
        ),
        ("POST", f"/v1/models/{HPT}:regress", '{"examples": []}', 400, "examples"),
        ("GET", "/v1/models/nope", None, 404, "nope"),
        ("GET", f"/v1/models/{HPT}:predict", None, 400, "Malformed request: GET"),
        ("POST", f"/v1/models/{HPT}:explain", "{}", 400, "Malformed request: POST"),
        ("DELETE", f"/v1/models/{HPT}", None, 400, "Malformed request: DELETE"),
    ],
)
def test_rest_errors(hpt_server, method, path, body, status, fragment):
    got_status, content_type, answer = call(hpt_server, method, path, body)
    assert got_status == status
    assert content_type == "application/json"
    assert fragment in answer["error"]


def test_oversized_body_is_refused_and_server_keeps_serving(hpt_server):
    big = '{"instances": [' + ",".join(["1.0"] * 400_000) + "]}"  # > 1 MiB limit in the fixture
    status, content_type, answer = call(hpt_server, "POST", f"/v1/models/{HPT}:predict", big)
    assert status == 413
    assert "exceeds" in answer["error"]
    status, _, answer = call(
        hpt_server, "POST", f"/v1/models/{HPT}:predict", '{"instances": [2.0]}'
    )
    assert (status, answer) == (200, {"predictions": [3.0]})


def test_b64_strings_in_and_out(tmp_path, hpt_server):
    """Row format with {"b64": ...} for a string input, bytes outputs returned as b64."""
    import tensorflow as tf

    from tests.server.conftest import publish
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"length": tf.strings.length(text), "echo_bytes": text}

    module = Echo()
    saved = tmp_path / "echo"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.serve})
    publish(saved, tmp_path / "base", 1)
    options = ServerOptions(model_name="echo", model_base_path=str(tmp_path / "base"))
    with ModelServer(options) as server:
        ServingClient(server.grpc_address).wait_until_available("echo", timeout=30)
        raw = b"\x00\xffab"
        payload = json.dumps({"instances": [{"b64": base64.b64encode(raw).decode()}, "hello"]})
        status, _, answer = call(server, "POST", "/v1/models/echo:predict", payload)
        assert status == 200
        assert answer["predictions"][0] == {
            "length": 4,
            "echo_bytes": {"b64": base64.b64encode(raw).decode()},
        }
        assert answer["predictions"][1]["length"] == 5
        with ServingClient(server.rest_url, protocol="rest") as rest:
            result = rest.predict("echo", {"text": np.array([raw], dtype=object)})
        assert result.outputs["echo_bytes"].tolist() == [raw]
        assert result.outputs["length"].tolist() == [4]


def test_rest_client_matches_grpc_client(rest_client, grpc_client):
    rest = rest_client.predict(HPT, {"x": [2.0, 3.0]})
    np.testing.assert_allclose(
        rest.outputs["y"], grpc_client.predict(HPT, {"x": [2.0, 3.0]}).outputs["y"]
    )
    assert rest.outputs["y"].dtype == np.float32
    assert rest_client.model_status(HPT)[0].state == "AVAILABLE"
    assert set(rest_client.signature_defs(HPT)) == set(grpc_client.signature_defs(HPT))
    examples = [example(x=2.0)]
    assert rest_client.classify(HPT, examples, signature_name="classify_x_to_y").classes == [
        [("", 3.0)]
    ]
    assert rest_client.regress(HPT, examples, signature_name="regress_x_to_y").values == [3.0]
    with pytest.raises(ServingError) as info:
        rest_client.predict(HPT, {"x": [1.0]}, version=99)
    assert info.value.code == "NOT_FOUND"
