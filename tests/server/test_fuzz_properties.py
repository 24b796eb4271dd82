"""Property-based fuzzing of `tfx-serving-ext serve` with hypothesis (issue 18).

Generators of REST bodies (valid-ish JSON shapes, ragged and very deep nesting, every JSON type,
b64 objects, huge numbers, NaN, wrong types, truncated and gzip bodies, lying encodings) and of
gRPC PredictRequests (random dtypes, shapes, ranks up to 65 and string sizes within bounds),
plus Classify/Regress requests of random Examples, go to the embedded server in a subprocess on
127.0.0.1. The properties, for every input:

- the server answers: HTTP 200 with a JSON result or a 4xx JSON `{"error": ...}`; gRPC a result
  or a status other than UNKNOWN/UNAVAILABLE/DEADLINE_EXCEEDED; never a stack or a server path;
- a well-formed request gets the right answer (half plus two: y = 0.5 x + 2);
- the process never dies, and after each batch of inputs its RSS is back within RSS_BOUND of
  where it was after warming up.

Reproducible in CI: `derandomize=True` (the same inputs every run), no example database
(`database=None`, nothing written into the repository), a deadline per input, bounded counts
(EXAMPLES: a few hundred in all). The number of inputs sent is printed in pytest's terminal
summary (and by each test with `-s`). `tests/server/test_fuzz.py` is the seeded, unshrinking
companion with a larger count.
"""

from __future__ import annotations

import base64
import collections
import gzip
import http.client
import json
import math
import tempfile
import time
import zlib
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.server.conftest import HPT
from tests.server.served_subprocess import serve_subprocess
from tfx_serving_ext.client.client import ServingClient

# Hypothesis caches what it learns under ./.hypothesis by default: keep the checkout clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tfx-serving-ext-hypothesis")

EXAMPLES = {
    "rest_hostile": 180,
    "rest_valid": 40,
    "grpc_predict_hostile": 140,
    "grpc_predict_valid": 30,
    "grpc_examples": 40,
}
RSS_BOUND = 256 * 2**20
DEADLINE = timedelta(seconds=20)
REQUEST_TIMEOUT = 60
SIGNATURES = ["serving_default", "classify_x_to_y", "regress_x_to_y", "regress_x2_to_y3", "", "no"]
INPUT_NAMES = ["x", "x", "inputs", "y", "", "\u00e9", "x" * 300]
BAD_GRPC_CODES = {"UNKNOWN", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
# Content-Encodings aiohttp refuses itself, before the server's handlers see the request.
UNDECODED_ENCODINGS = {"br"}
LEAKS = ("most recent call last", 'File "', "site-packages", '.py"', "/tmp/", "/work/")
# Inputs sent, by kind (shrinking included), for the terminal summary.
SENT: collections.Counter = collections.Counter()
ANSWERS: collections.Counter = collections.Counter()


def fuzz_settings(kind: str):
    return settings(
        max_examples=EXAMPLES[kind],
        derandomize=True,
        database=None,
        deadline=DEADLINE,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# ---- REST generators ------------------------------------------------------------------------


class Deep:
    """A value nested `depth` lists deep, written out without recursion."""

    def __init__(self, depth: int, leaf) -> None:
        self.depth, self.leaf = depth, leaf

    def __repr__(self) -> str:
        return f"Deep({self.depth}, {self.leaf!r})"


def to_json(value) -> str:
    """Returns `value` as JSON text (NaN/Infinity as Python writes them; Deep as its nesting)."""
    if isinstance(value, Deep):
        return "[" * value.depth + to_json(value.leaf) + "]" * value.depth
    if isinstance(value, list):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


b64_objects = st.one_of(
    st.binary(max_size=24).map(lambda b: {"b64": base64.b64encode(b).decode()}),
    st.sampled_from([{"b64": "!!"}, {"b64": 5}, {"b64": ""}, {"b64": "YQ"}, {"b64": None}]),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN, infinities, subnormals
    st.text(max_size=8),
    b64_objects,
    st.just({}),
)


@st.composite
def rectangular(draw, leaf=leaves, min_dim: int = 0):
    """Returns a rectangular nested list of rank 0-4 (leaves drawn one by one: mixed types)."""
    shape = draw(st.lists(st.integers(min_dim, 3), max_size=4))

    def build(dims):
        if not dims:
            return draw(leaf)
        return [build(dims[1:]) for _ in range(dims[0])]

    return build(shape)


tensors = st.one_of(
    rectangular(),
    rectangular(leaf=st.floats(-1e6, 1e6)),
    st.recursive(leaves, lambda inner: st.lists(inner, max_size=3), max_leaves=12),  # ragged
    st.builds(Deep, st.sampled_from([33, 64, 65, 200, 990, 1500]), leaves),
)
any_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
signature_names = st.one_of(st.sampled_from(SIGNATURES), st.integers(), st.lists(st.text()))


@st.composite
def predict_bodies(draw) -> dict:
    body: dict = {}
    if draw(st.booleans()):
        body["signature_name"] = draw(signature_names)
    layouts = [
        "instances",
        "instances",
        "inputs",
        "named inputs",
        "named inputs",
        "both",
        "neither",
    ]
    layout = draw(st.sampled_from(layouts))
    if layout in ("instances", "both"):
        body["instances"] = draw(st.one_of(tensors, st.lists(st.dictionaries(
            st.sampled_from(INPUT_NAMES), tensors, max_size=2), max_size=3)))  # fmt: skip
    if layout in ("inputs", "both"):
        body["inputs"] = draw(tensors)
    if layout == "named inputs":
        body["inputs"] = draw(st.dictionaries(st.sampled_from(INPUT_NAMES), tensors, max_size=3))
    if draw(st.integers(0, 9)) == 0:
        body[draw(st.text(max_size=6))] = draw(any_json)
    return body


@st.composite
def example_bodies(draw) -> dict:
    features = st.dictionaries(st.sampled_from(["x", "y", "inputs", ""]), tensors, max_size=3)
    body: dict = {"examples": draw(st.one_of(st.lists(features, max_size=4), tensors))}
    if draw(st.booleans()):
        body["signature_name"] = draw(signature_names)
    if draw(st.integers(0, 4)) == 0:
        body["context"] = draw(st.one_of(features, any_json))
    return body


@st.composite
def rest_requests(draw) -> tuple[str, bytes, dict]:
    """Returns (path, body, headers) of a POST to the model's predict/classify/regress."""
    verb = draw(st.sampled_from(["predict", "predict", "classify", "regress"]))
    where = draw(st.sampled_from(["", "", "/versions/123", "/versions/7", "/labels/stable"]))
    model = draw(st.sampled_from([HPT, HPT, HPT, "nope"]))
    kind = draw(st.sampled_from(["body", "body", "body", "any json", "bytes"]))
    if kind == "bytes":
        raw = draw(st.binary(max_size=64))
    elif kind == "any json":
        raw = to_json(draw(any_json)).encode()
    else:
        raw = to_json(draw(predict_bodies() if verb == "predict" else example_bodies())).encode()
    headers: dict = {"Content-Type": "application/json"}
    encoding = draw(st.sampled_from(["plain"] * 4 + ["truncated", "gzip", "bad gzip", "lying"]))
    if encoding == "truncated":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif encoding == "gzip":
        raw = gzip.compress(raw)
        headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "deflate", "br"]))
        if headers["Content-Encoding"] == "deflate":
            raw = zlib.compress(gzip.decompress(raw))
    elif encoding == "bad gzip":
        raw = gzip.compress(raw)[: draw(st.integers(0, 20))] + draw(st.binary(max_size=16))
        headers["Content-Encoding"] = "gzip"
    elif encoding == "lying":
        headers["Content-Encoding"] = "gzip"  # says gzip, is not
    return f"/v1/models/{model}{where}:{verb}", raw, headers


valid_floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@st.composite
def valid_predictions(draw) -> tuple[dict, np.ndarray, str]:
    """Returns (body, x, result key) of a well-formed serving_default request."""
    x = np.array(draw(rectangular(leaf=valid_floats, min_dim=1)), dtype=np.float32)
    if x.ndim == 0:
        x = x.reshape(1)
    layout = draw(st.sampled_from(["instances", "inputs", "named instances", "named inputs"]))
    if layout == "instances":
        return {"instances": x.tolist()}, x, "predictions"
    if layout == "named instances":
        return {"instances": [{"x": row} for row in x.tolist()]}, x, "predictions"
    if layout == "inputs":
        return {"inputs": x.tolist()}, x, "outputs"
    return {"signature_name": "serving_default", "inputs": {"x": x.tolist()}}, x, "outputs"


# ---- gRPC generators ------------------------------------------------------------------------

DTYPES = [value for value in types_pb2.DataType.values() if value < 100] + [101, 107, 999]
VALUE_FIELDS = [
    "float_val",
    "double_val",
    "int_val",
    "int64_val",
    "bool_val",
    "string_val",
    "half_val",
    "tensor_content",
]


# (signature, its input, its dtype) of half plus two: float `x`, serialized tf.Examples.
AIMED_INPUTS = [
    ("serving_default", "x", types_pb2.DT_FLOAT),
    ("classify_x_to_y", "inputs", types_pb2.DT_STRING),
    ("regress_x_to_y", "inputs", types_pb2.DT_STRING),
]
# A dtype and the field its values go in: the "consistent" tensors reach the model.
FIELD_OF_DTYPE = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_HALF: "half_val",
}


@st.composite
def tensor_protos(draw, likely_dtype: int = types_pb2.DT_FLOAT) -> tensor_pb2.TensorProto:
    """Returns a TensorProto: half of them with values that fit their dtype and shape."""
    consistent = draw(st.booleans())
    if consistent:
        dtype = draw(st.sampled_from([likely_dtype] * 6 + list(FIELD_OF_DTYPE)))
    else:
        dtype = draw(st.sampled_from(DTYPES))
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    rank = draw(st.one_of(st.integers(0, 4), st.sampled_from([33, 40, 64, 65])))
    if rank > 4:
        sizes = st.just(1)
    elif consistent:
        sizes = st.integers(0, 3)
    else:
        sizes = st.sampled_from([0, 1, 2, 3, -1, 2**20, 2**40])
    for _ in range(rank):
        tensor.tensor_shape.dim.add(size=draw(sizes))
    if consistent:
        count = math.prod(dim.size for dim in tensor.tensor_shape.dim)
        field = FIELD_OF_DTYPE[dtype]
    else:
        tensor.tensor_shape.unknown_rank = draw(st.integers(0, 29)) == 0
        count = draw(st.integers(0, 6))
        field = draw(st.sampled_from(VALUE_FIELDS))
    if field == "string_val":
        # Up to 64 KiB a string (a few hundred KiB a request): within gRPC's default 4 MiB.
        sizes = st.sampled_from([0, 1, 7, 1024, 65536])
        tensor.string_val.extend((b"\xff\x00a" * size)[:size] for size in draw(
            st.lists(sizes, min_size=count, max_size=count)))  # fmt: skip
    elif field == "tensor_content":
        tensor.tensor_content = draw(st.binary(max_size=48))
    elif field in ("float_val", "double_val"):
        values = st.lists(st.floats(width=32), min_size=count, max_size=count)
        getattr(tensor, field).extend(draw(values))
    elif field == "bool_val":
        tensor.bool_val.extend(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
    else:
        bound = 2**31 - 1 if field in ("int_val", "half_val") else 2**63 - 1
        ints = st.integers(-bound - 1 if field == "int_val" else 0, bound)
        getattr(tensor, field).extend(draw(st.lists(ints, min_size=count, max_size=count)))
    return tensor


@st.composite
def model_specs(draw, spec) -> None:
    spec.name = draw(st.sampled_from([HPT, HPT, HPT, "", "nope"]))
    spec.signature_name = draw(st.sampled_from(SIGNATURES))
    choice = draw(st.integers(0, 9))
    if choice == 0:
        spec.version.value = draw(st.sampled_from([123, 7, -1, 2**62]))
    elif choice == 1:
        spec.version_label = draw(st.sampled_from(["stable", ""]))


@st.composite
def predict_requests(draw) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    if draw(st.booleans()):  # aimed at the model: its name, a signature, that one's input
        request.model_spec.name = HPT
        signature, name, dtype = draw(st.sampled_from(AIMED_INPUTS))
        request.model_spec.signature_name = signature
        request.inputs[name].CopyFrom(draw(tensor_protos(likely_dtype=dtype)))
        return request
    draw(model_specs(request.model_spec))
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2, 3]))):
        request.inputs[draw(st.sampled_from(INPUT_NAMES))].CopyFrom(draw(tensor_protos()))
    if draw(st.integers(0, 9)) == 0:
        request.output_filter.append(draw(st.sampled_from(["y", "nope", "scores"])))
    return request


@st.composite
def examples(draw) -> example_pb2.Example:
    example = example_pb2.Example()
    for name in draw(st.lists(st.sampled_from(["x", "y", "inputs", ""]), max_size=3)):
        feature = example.features.feature[name]
        kind = draw(st.sampled_from(["float", "int", "bytes", "none"]))
        if kind == "float":
            feature.float_list.value.extend(draw(st.lists(st.floats(width=32), max_size=3)))
        elif kind == "int":
            feature.int64_list.value.extend(draw(st.lists(st.integers(-5, 5), max_size=3)))
        elif kind == "bytes":
            feature.bytes_list.value.extend(draw(st.lists(st.binary(max_size=8), max_size=3)))
    return example


@st.composite
def example_requests(draw) -> tuple[str, object]:
    method = draw(st.sampled_from(["Classify", "Regress"]))
    cls = (
        classification_pb2.ClassificationRequest
        if method == "Classify"
        else regression_pb2.RegressionRequest
    )
    request = cls()
    draw(model_specs(request.model_spec))
    if draw(st.booleans()):
        request.input.example_list_with_context.context.CopyFrom(draw(examples()))
        target = request.input.example_list_with_context.examples
    else:
        target = request.input.example_list.examples
    target.extend(draw(st.lists(examples(), max_size=4)))
    return method, request


# ---- sending and checking -------------------------------------------------------------------


def assert_no_leak(text: str, what: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{what} leaks {leak!r}: {text[:500]}"


class Fuzzed:
    """The server under fuzzing, with the first input after which it was found dead."""

    def __init__(self, served) -> None:
        self.served = served
        self.killer: str | None = None
        self.last_input = "the warm-up"
        self.baseline_rss = 0
        self.rest = urlsplit(served.rest_url)
        self.channel = grpc.insecure_channel(served.grpc_address)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def check_alive(self, what: str | None = None) -> None:
        """Fails (for this input and every later one) once the server has died."""
        if self.killer is None and not self.served.alive():
            self.killer = what or self.last_input
        if what is not None:
            self.last_input = what
        assert self.killer is None, (
            f"the server died after {self.killer}: {self.served.describe_exit()}"
        )

    def post(self, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        self.check_alive()
        connection = http.client.HTTPConnection(
            self.rest.hostname, self.rest.port, timeout=REQUEST_TIMEOUT
        )
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        SENT["REST"] += 1
        ANSWERS[f"HTTP {response.status}"] += 1
        self.check_alive(f"REST POST {path} {body[:300]!r}")
        return response.status, answer

    def call(self, method: str, request) -> tuple[str, object]:
        self.check_alive()
        SENT[f"gRPC {method}"] += 1
        try:
            reply = getattr(self.stub, method)(request, timeout=REQUEST_TIMEOUT)
            code = "OK"
        except grpc.RpcError as error:
            reply, code = error.details() or "", error.code().name
        ANSWERS[f"gRPC {code}"] += 1
        self.check_alive(f"gRPC {method} {request!r:.300}")
        return code, reply


def check_rest_answer(status: int, answer: bytes, what: str, headers: dict | None = None) -> dict:
    assert status < 500, f"{what} -> {status}: {answer[:300]!r}"
    try:
        document = json.loads(answer)
    except ValueError:
        if status == 400 and (headers or {}).get("Content-Encoding") in UNDECODED_ENCODINGS:
            # Refused by aiohttp before the request reaches the server's handlers: a plain-text
            # 400 (TF Serving would answer JSON); still the client's error, and no stack.
            assert_no_leak(answer.decode("utf-8", "replace"), what)
            return {}
        pytest.fail(f"{what} -> {status} with a body that is not JSON: {answer[:300]!r}")
    if status == 200:
        assert isinstance(document, dict) and document.keys() & {
            "predictions",
            "outputs",
            "results",
        }, f"{what} -> 200 without a result: {answer[:300]!r}"
    else:
        assert 400 <= status < 500
        assert isinstance(document.get("error"), str), f"{what} -> {status}: {answer[:300]!r}"
        assert_no_leak(document["error"], what)
    return document


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, half_plus_two_dir, request):
    _report_in_terminal_summary(request.config)
    with serve_subprocess(half_plus_two_dir, tmp_path_factory.mktemp("fuzzprop"), HPT) as served:
        with ServingClient(served.grpc_address) as client:
            client.wait_until_available(HPT, timeout=120)
        target = Fuzzed(served)
        # Warm both front ends (and TensorFlow's first run) before taking the baseline RSS.
        for value in range(20):
            target.post(f"/v1/models/{HPT}:predict", b'{"instances": [%d]}' % value, {})
            target.call("Predict", _valid_grpc_request([float(value)]))
        target.baseline_rss = served.rss_bytes()
        SENT.clear()
        ANSWERS.clear()
        try:
            yield target
        finally:
            target.channel.close()


def assert_memory_returns(target: Fuzzed, what: str) -> None:
    """The server's RSS comes back within RSS_BOUND of the warmed-up baseline."""
    deadline = time.monotonic() + 10
    while True:
        grown = target.served.rss_bytes() - target.baseline_rss
        if grown < RSS_BOUND or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(f"\n{what}: RSS {grown / 2**20:+.0f} MiB over the warmed-up baseline")
    assert grown < RSS_BOUND, f"after {what} the server's RSS stayed {grown / 2**20:.0f} MiB up"


def _valid_grpc_request(values: list[float]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HPT
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.tensor_shape.dim.add(size=len(values))
    tensor.float_val.extend(values)
    return request


# ---- the properties -------------------------------------------------------------------------


def test_hostile_rest_bodies_get_a_json_answer_and_never_a_5xx(fuzzed):
    @fuzz_settings("rest_hostile")
    @given(rest_requests())
    def one(case):
        path, body, headers = case
        status, answer = fuzzed.post(path, body, headers)
        check_rest_answer(status, answer, f"POST {path} {headers} {body[:300]!r}", headers)

    one()
    assert_memory_returns(fuzzed, "hostile REST bodies")


def test_well_formed_rest_predictions_are_right(fuzzed):
    @fuzz_settings("rest_valid")
    @given(valid_predictions())
    def one(case):
        body, x, key = case
        encoded = json.dumps(body).encode()
        status, answer = fuzzed.post(f"/v1/models/{HPT}:predict", encoded, {})
        document = check_rest_answer(status, answer, f"predict {encoded[:300]!r}")
        assert status == 200, answer
        got = document[key]
        if key == "predictions" and isinstance(body["instances"][0], dict):
            got = [row if not isinstance(row, dict) else row["y"] for row in got]
        np.testing.assert_allclose(np.array(got, dtype=np.float32), x * 0.5 + 2, rtol=1e-6)

    one()


def test_hostile_grpc_predict_requests_get_a_status_or_a_result(fuzzed):
    @fuzz_settings("grpc_predict_hostile")
    @given(predict_requests())
    def one(request):
        code, reply = fuzzed.call("Predict", request)
        assert code not in BAD_GRPC_CODES, f"Predict -> {code} {reply!s:.300} for {request!r:.500}"
        if code != "OK":
            assert_no_leak(reply, f"Predict -> {code}")

    one()
    assert_memory_returns(fuzzed, "hostile gRPC Predict requests")


def test_well_formed_grpc_predictions_are_right(fuzzed):
    @fuzz_settings("grpc_predict_valid")
    @given(st.lists(valid_floats, min_size=1, max_size=64))
    def one(values):
        code, reply = fuzzed.call("Predict", _valid_grpc_request(values))
        assert code == "OK", reply
        assert reply.model_spec.version.value == 123
        got = np.array(reply.outputs["y"].float_val, dtype=np.float32)
        np.testing.assert_allclose(got, np.array(values, dtype=np.float32) * 0.5 + 2, rtol=1e-6)

    one()


def test_grpc_classify_and_regress_of_random_examples_get_a_status_or_a_result(fuzzed):
    @fuzz_settings("grpc_examples")
    @given(example_requests())
    def one(case):
        method, request = case
        code, reply = fuzzed.call(method, request)
        assert code not in BAD_GRPC_CODES, f"{method} -> {code} {reply!s:.300}"
        if code != "OK":
            assert_no_leak(reply, f"{method} -> {code}")

    one()
    assert_memory_returns(fuzzed, "gRPC Classify/Regress requests")
    # Still serving right after everything above.
    with ServingClient(fuzzed.served.grpc_address) as client:
        assert client.predict(HPT, {"x": [2.0]}).outputs["y"].tolist() == [3.0]


# ---- reporting ------------------------------------------------------------------------------


def summary_line() -> str:
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(SENT.items()))
    answers = ", ".join(f"{kind}: {count}" for kind, count in sorted(ANSWERS.items()))
    return f"fuzz properties: {sum(SENT.values())} inputs sent ({kinds}); answers {answers}"


class _SummaryPlugin:
    def pytest_terminal_summary(self, terminalreporter) -> None:
        if SENT:
            terminalreporter.write_line(summary_line())


def _report_in_terminal_summary(config) -> None:
    name = "tfx-serving-ext-fuzz-properties"
    if not config.pluginmanager.has_plugin(name):
        config.pluginmanager.register(_SummaryPlugin(), name)
