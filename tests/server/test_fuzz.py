"""Fuzzing the embedded server (issue 18): random REST bodies and gRPC requests, seeded.

`hypothesis` is not among the dev dependencies, so a seeded generator makes the inputs: each
run tries the same FUZZ_INPUTS inputs (override the seed with TFX_SERVING_FUZZ_SEED to explore),
against `tfx-serving-ext serve` in a subprocess on 127.0.0.1. Every input must get an answer
(HTTP 2xx/4xx, or a gRPC result or status other than UNKNOWN) whose error text carries no
stack or server path; the server must never die, and its RSS must come back within
RSS_GROWTH_BOUND of where it was after warming up. The count of inputs tried is printed.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import os
import random
import time
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.server.conftest import HPT
from tests.server.served_subprocess import serve_subprocess
from tfx_serving_ext.client.client import ServingClient

FUZZ_INPUTS = 1500
TIME_BUDGET_SECONDS = 180
RSS_GROWTH_BOUND = 400 * 2**20
SEED = int(os.environ.get("TFX_SERVING_FUZZ_SEED", "18"))

SIGNATURES = ["serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x2_to_y3", "", "no"]
INPUT_NAMES = ["x", "inputs", "y", "", "\u00e9", "x" * 300]
DTYPES = [d for d in types_pb2.DataType.values() if d < 100] + [999]
LEAKS = ("most recent call last", 'File "', "site-packages", '.py"', "/tmp/")


# ---- generators -----------------------------------------------------------------------------


def _leaf(rng: random.Random):
    return rng.choice(
        [
            lambda: rng.uniform(-1e6, 1e6),
            lambda: rng.randint(-(2**70), 2**70),
            lambda: rng.choice([True, False, None]),
            lambda: "".join(rng.choice('ab\u00e9\u2603\\"') for _ in range(rng.randint(0, 8))),
            lambda: {"b64": base64.b64encode(rng.randbytes(rng.randint(0, 12))).decode()},
            lambda: {"b64": rng.choice(["!!", 5, "", "YQ"])},
            lambda: {},
        ]
    )()


def _tensor(rng: random.Random, depth: int = 0):
    """Returns a random JSON tensor: usually rectangular, sometimes ragged or very deep."""
    roll = rng.random()
    if roll < 0.05:
        value = _leaf(rng)
        for _ in range(rng.choice([33, 40, 64, 65, 200, 990, 1500])):
            value = [value]
        return value
    if depth >= rng.randint(0, 4) or roll < 0.15:
        return _leaf(rng)
    width = rng.choice([0, 1, 2, 3, 5])
    if rng.random() < 0.8:
        item = _tensor(rng, depth + 1)
        return [item for _ in range(width)]
    return [_tensor(rng, depth + 1) for _ in range(width)]


def rest_request(rng: random.Random) -> tuple[str, str, bytes, dict]:
    """Returns (method, path, body, headers) of a random REST request."""
    verb = rng.choice(["predict", "classify", "regress", "predict", "status", "metadata", "junk"])
    model = rng.choice([HPT, HPT, HPT, "nope", "%00", "a" * 200])
    version = rng.choice(["", "", "/versions/123", "/versions/7", "/labels/stable"])
    headers: dict = {}
    if verb in ("status", "metadata"):
        path = f"/v1/models/{model}{version}" + ("/metadata" if verb == "metadata" else "")
        return "GET", path, b"", headers
    if verb == "junk":
        return (
            rng.choice(["GET", "POST", "PUT", "DELETE"]),
            rng.choice(
                ["/v1/models", "/v1/models/:predict", "/v1/", "/v2/x", "/v1/models/a/versions/x"]
            ),
            rng.randbytes(rng.randint(0, 64)),
            headers,
        )
    body: dict = {}
    if rng.random() < 0.8:
        body["signature_name"] = rng.choice(SIGNATURES + [5, None, ["x"]])
    if verb == "predict":
        key = rng.choice(["instances", "inputs", "both", "neither"])
        if key in ("instances", "both"):
            body["instances"] = _tensor(rng)
        if key in ("inputs", "both"):
            body["inputs"] = (
                {rng.choice(INPUT_NAMES): _tensor(rng) for _ in range(rng.randint(0, 3))}
                if rng.random() < 0.6
                else _tensor(rng)
            )
    else:
        examples = [
            {rng.choice(["x", "y", "inputs"]): _tensor(rng, 3) for _ in range(rng.randint(0, 3))}
            for _ in range(rng.randint(0, 4))
        ]
        body["examples"] = examples if rng.random() < 0.9 else _tensor(rng)
        if rng.random() < 0.2:
            body["context"] = {"x": _tensor(rng, 3)}
    try:
        raw = json.dumps(body).encode()
    except (RecursionError, ValueError):
        raw = b"[" * 5000
    mutation = rng.random()
    if mutation < 0.1:
        raw = raw[: rng.randint(0, len(raw))]
    elif mutation < 0.15:
        raw = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        raw = bytes(raw)
    elif mutation < 0.25:
        raw = gzip.compress(raw)
        if rng.random() < 0.5:
            raw = raw[:12] + rng.randbytes(16)
        headers["Content-Encoding"] = "gzip"
    elif mutation < 0.28:
        raw = _gzip_bomb()
        headers["Content-Encoding"] = "gzip"
    return "POST", f"/v1/models/{model}{version}:{verb}", raw, headers


@functools.cache
def _gzip_bomb() -> bytes:
    """Returns ~300 KiB of gzip that inflates past the server's default 256 MiB body cap."""
    return gzip.compress(b" " * (300 * 2**20), compresslevel=1)


def _tensor_proto(rng: random.Random) -> tensor_pb2.TensorProto:
    tensor = tensor_pb2.TensorProto(dtype=rng.choice(DTYPES))
    rank = rng.choice([0, 1, 1, 2, 3, 33, 40, 70])
    for _ in range(rank):
        tensor.tensor_shape.dim.add(
            size=rng.choice([0, 1, 2, 3, -1, 2**20, 2**40]) if rank < 8 else 1
        )
    tensor.tensor_shape.unknown_rank = rng.random() < 0.03
    count = rng.choice([0, 1, 2, 3, 6])
    field = rng.choice(["float_val", "int_val", "int64_val", "string_val", "bool_val", "content"])
    if field == "string_val":
        tensor.string_val.extend(rng.randbytes(rng.choice([0, 1, 1024])) for _ in range(count))
    elif field == "content":
        tensor.tensor_content = rng.randbytes(rng.choice([0, 3, 4, 8, 12, 24]))
    elif field == "float_val":
        tensor.float_val.extend(rng.uniform(-10, 10) for _ in range(count))
    elif field == "bool_val":
        tensor.bool_val.extend(rng.random() < 0.5 for _ in range(count))
    else:
        getattr(tensor, field).extend(rng.randint(-100, 100) for _ in range(count))
    return tensor


def _example(rng: random.Random) -> example_pb2.Example:
    example = example_pb2.Example()
    for _ in range(rng.randint(0, 3)):
        feature = example.features.feature[rng.choice(["x", "y", "inputs"])]
        kind = rng.choice(["float", "int", "bytes"])
        if kind == "float":
            feature.float_list.value.extend(rng.uniform(-5, 5) for _ in range(rng.randint(0, 3)))
        elif kind == "int":
            feature.int64_list.value.extend(rng.randint(-5, 5) for _ in range(rng.randint(0, 3)))
        else:
            feature.bytes_list.value.extend(rng.randbytes(4) for _ in range(rng.randint(0, 3)))
    return example


def _spec(rng: random.Random, spec) -> None:
    spec.name = rng.choice([HPT, HPT, HPT, "", "nope"])
    spec.signature_name = rng.choice(SIGNATURES)
    choice = rng.random()
    if choice < 0.1:
        spec.version.value = rng.choice([123, 7, -1])
    elif choice < 0.15:
        spec.version_label = rng.choice(["stable", ""])


def grpc_request(rng: random.Random) -> tuple[str, object]:
    """Returns (method name, request message or raw bytes) of a random gRPC call."""
    method = rng.choice(["Predict", "Predict", "Classify", "Regress", "MultiInference", "Meta"])
    if rng.random() < 0.05:
        return method, rng.randbytes(rng.randint(0, 64))
    if method == "Predict":
        request = predict_pb2.PredictRequest()
        _spec(rng, request.model_spec)
        for _ in range(rng.randint(0, 3)):
            request.inputs[rng.choice(INPUT_NAMES)].CopyFrom(_tensor_proto(rng))
        if rng.random() < 0.1:
            request.output_filter.append(rng.choice(["y", "nope", "scores"]))
        return method, request
    if method == "Meta":
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        _spec(rng, request.model_spec)
        request.metadata_field.extend(rng.choice([[], ["signature_def"], ["x"]]))
        return method, request
    if method == "MultiInference":
        request = inference_pb2.MultiInferenceRequest()
        for _ in range(rng.randint(0, 3)):
            task = request.tasks.add()
            _spec(rng, task.model_spec)
            task.method_name = rng.choice(
                ["tensorflow/serving/classify", "tensorflow/serving/regress", "x"]
            )
        target = request.input
    else:
        cls = (
            classification_pb2.ClassificationRequest
            if method == "Classify"
            else (regression_pb2.RegressionRequest)
        )
        request = cls()
        _spec(rng, request.model_spec)
        target = request.input
    if rng.random() < 0.3:
        target.example_list_with_context.context.CopyFrom(_example(rng))
        examples = target.example_list_with_context.examples
    else:
        examples = target.example_list.examples
    for _ in range(rng.randint(0, 4)):
        examples.append(_example(rng))
    return method, request


# ---- the run --------------------------------------------------------------------------------


def _send_rest(base_url: str, method: str, path: str, body: bytes, headers: dict):
    request = urllib.request.Request(
        base_url + path, data=body or None, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _grpc_callables(channel: grpc.Channel) -> dict:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    calls = {
        "Predict": stub.Predict,
        "Classify": stub.Classify,
        "Regress": stub.Regress,
        "MultiInference": stub.MultiInference,
        "Meta": stub.GetModelMetadata,
    }
    paths = {
        "Predict": "Predict",
        "Classify": "Classify",
        "Regress": "Regress",
        "MultiInference": "MultiInference",
        "Meta": "GetModelMetadata",
    }
    raw = {
        name: channel.unary_unary(
            f"/tensorflow.serving.PredictionService/{method}",
            request_serializer=None,
            response_deserializer=None,
        )
        for name, method in paths.items()
    }
    return {"typed": calls, "raw": raw}


def _check_text(text: str, what: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{what} leaks {leak!r}: {text[:500]}"


@pytest.fixture(scope="module")
def served(tmp_path_factory, half_plus_two_dir):
    with serve_subprocess(half_plus_two_dir, tmp_path_factory.mktemp("fuzz"), HPT) as server:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(HPT, timeout=120)
        yield server


def test_fuzzed_requests_get_answers_and_the_server_survives(served):
    rng = random.Random(SEED)
    tried = {"rest": 0, "grpc": 0}
    statuses: dict = {}
    codes: dict = {}
    with grpc.insecure_channel(served.grpc_address) as channel:
        calls = _grpc_callables(channel)
        # Warm up both front ends before measuring memory.
        for _ in range(20):
            _send_rest(served.rest_url, "GET", f"/v1/models/{HPT}", b"", {})
            meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            meta.model_spec.name = HPT
            calls["typed"]["Meta"](meta, timeout=60)
        baseline = served.rss_bytes()
        peak = baseline
        start = time.monotonic()
        for index in range(FUZZ_INPUTS):
            if time.monotonic() - start > TIME_BUDGET_SECONDS:
                break
            if index % 5 < 3:
                method, path, body, headers = rest_request(rng)
                status, answer = _send_rest(served.rest_url, method, path, body, headers)
                tried["rest"] += 1
                statuses[status] = statuses.get(status, 0) + 1
                what = f"REST {method} {path} ({len(body)} bytes) -> {status}"
                assert status < 500, (
                    f"{what}: {body[:300]!r} {answer[:300]!r}; server log:\n"
                    + ("".join(served.output)[-3000:])
                )
                _check_text(answer.decode("utf-8", "replace"), what)
            else:
                method, request = grpc_request(rng)
                tried["grpc"] += 1
                kind = "raw" if isinstance(request, bytes) else "typed"
                try:
                    calls[kind][method](request, timeout=60)
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                    details = error.details() or ""
                    _check_text(details, f"gRPC {method} -> {code}")
                codes[code] = codes.get(code, 0) + 1
                assert code not in ("UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED"), (
                    f"gRPC {method} -> {code}: {request!r:.500}"
                )
            assert served.alive(), f"input {index} killed the server: {served.describe_exit()}"
            if index % 50 == 0:
                peak = max(peak, served.rss_bytes())
        elapsed = time.monotonic() - start
    total = tried["rest"] + tried["grpc"]
    time.sleep(2)
    after = served.rss_bytes()
    print(
        f"\nfuzz: {total} inputs tried ({tried['rest']} REST, {tried['grpc']} gRPC) in "
        f"{elapsed:.0f} s, seed {SEED}; HTTP {dict(sorted(statuses.items()))}; gRPC {codes}; "
        f"RSS {baseline / 2**20:.0f} MiB -> peak {peak / 2**20:.0f} -> {after / 2**20:.0f} MiB"
    )
    assert total >= 500, f"only {total} inputs in {TIME_BUDGET_SECONDS} s"
    assert after - baseline < RSS_GROWTH_BOUND, f"RSS grew {(after - baseline) / 2**20:.0f} MiB"
    with ServingClient(served.grpc_address) as client:
        assert client.predict(HPT, {"x": [2.0]}).outputs["y"].tolist() == [3.0]
