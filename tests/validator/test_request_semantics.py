"""One meaning of a request: the warmup replay, the validator and the embedded server agree.

TF Serving serializes a Classify/Regress request's context followed by each example, so a
feature both set takes the example's value. The model here reveals which value was used: it
refuses a negative `x` (an assertion in the graph), the context sets x = -10 and the example
x = 2, so only the example's value answers (0.5 * 2 + 2 = 3).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

MODEL = "context_probe"
CONTEXT_X = -10.0
EXAMPLE_X = 2.0
EXPECTED = 0.5 * EXAMPLE_X + 2.0


def _example(**features):
    import tensorflow as tf

    result = tf.train.Example()
    for key, value in features.items():
        result.features.feature[key].float_list.value.append(value)
    return result


def _input(model_input, example_x: float | None = EXAMPLE_X):
    """Fills a tensorflow.serving.Input with the context (x = -10) and one example."""
    with_context = model_input.example_list_with_context
    with_context.context.CopyFrom(_example(x=CONTEXT_X))
    if example_x is None:
        with_context.examples.add()
    else:
        with_context.examples.append(_example(x=example_x))
    return model_input


def _classify_request(example_x: float | None = EXAMPLE_X):
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "classify_x"
    _input(request.input, example_x)
    return request


def _regress_request(example_x: float | None = EXAMPLE_X):
    from tensorflow_serving.apis import regression_pb2

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "regress_x"
    _input(request.input, example_x)
    return request


def _multi_inference_request():
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in [
        ("classify_x", "tensorflow/serving/classify"),
        ("regress_x", "tensorflow/serving/regress"),
    ]:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = MODEL
        task.model_spec.signature_name = signature
    _input(request.input)
    return request


def _warmup_logs():
    from tensorflow_serving.apis import prediction_log_pb2

    logs = [prediction_log_pb2.PredictionLog() for _ in range(3)]
    logs[0].classify_log.request.CopyFrom(_classify_request())
    logs[1].regress_log.request.CopyFrom(_regress_request())
    logs[2].multi_inference_log.request.CopyFrom(_multi_inference_request())
    return logs


def _build_context_probe(export_dir: Path) -> Path:
    """Writes a TF1 SavedModel: `classify_x` (scores) and `regress_x` (outputs) = 0.5 x + 2,
    refusing any x < 0."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        x = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})["x"]
        check = v1.assert_non_negative(x, message="x came from the context")
        with tf.control_dependencies([check]):
            y = tf.identity(x * 0.5 + 2.0, name="y")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        signatures = {
            "classify_x": build(
                {"inputs": info(serialized)}, {"scores": info(y)}, "tensorflow/serving/classify"
            ),
            "regress_x": build(
                {"inputs": info(serialized)}, {"outputs": info(y)}, "tensorflow/serving/regress"
            ),
        }
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()
    return export_dir


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    """The context probe as version 1 of a model base path, with a warmup file whose every
    record sends the context x = -10 and an example x = 2 (do not modify)."""
    from tfx_serving_ext.checks.warmup import write_warmup_file

    version_dir = _build_context_probe(tmp_path_factory.mktemp("probe_base") / "1")
    write_warmup_file(version_dir, _warmup_logs())
    return version_dir


@pytest.fixture(scope="module")
def probe_model(probe_dir):
    from tfx_serving_ext.checks.model_runner import LocalModel

    return LocalModel(probe_dir)


@pytest.fixture(scope="module")
def probe_server(probe_dir):
    """The embedded server on loopback, serving the probe once its warmup has passed."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    from tfx_serving_ext.server import ModelServer, ServerOptions

    server = ModelServer(
        ServerOptions(
            model_name=MODEL,
            model_base_path=str(probe_dir.parent),
            host="127.0.0.1",
            port=0,
            rest_api_port=0,
            file_system_poll_wait_seconds=0.1,
            max_num_load_retries=0,
        )
    )
    server.start()
    try:
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            request = get_model_status_pb2.GetModelStatusRequest()
            request.model_spec.name = MODEL
            deadline = time.monotonic() + 60
            state = None
            while time.monotonic() < deadline:
                try:
                    (status,) = stub.GetModelStatus(request, timeout=5).model_version_status
                    state = status
                    if status.state in (30, 50):  # AVAILABLE, END
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
            assert state is not None and state.state == 30, f"probe never served: {state}"
        yield server
    finally:
        server.stop()


# ---- the one runner ------------------------------------------------------------------------


def test_runner_takes_the_examples_value_over_the_contexts(probe_model):
    classified = probe_model.classify(_classify_request())
    assert classified.result.classifications[0].classes[0].score == EXPECTED
    regressed = probe_model.regress(_regress_request())
    assert [r.value for r in regressed.result.regressions] == [EXPECTED]
    multi = probe_model.multi_inference(_multi_inference_request())
    assert multi.results[1].regression_result.regressions[0].value == EXPECTED


def test_runner_uses_the_contexts_value_when_the_example_lacks_the_feature(probe_model):
    """The probe does reveal the context: without x in the example, its -10 is refused."""
    from tfx_serving_ext.protocol.errors import ServingError

    with pytest.raises(ServingError, match="x came from the context") as caught:
        probe_model.regress(_regress_request(example_x=None))
    assert caught.value.code == "INVALID_ARGUMENT"


# ---- the warmup replay and the validator ---------------------------------------------------


def test_warmup_replay_takes_the_examples_value(probe_model, probe_dir):
    from tfx_serving_ext.checks.requests import RequestForSignature
    from tfx_serving_ext.checks.warmup import (
        WarmupReplayError,
        read_warmup_file,
        replay_prediction_logs,
        replay_requests,
    )

    records = [
        RequestForSignature("classify_x", "classify", _classify_request()),
        RequestForSignature("regress_x", "regress", _regress_request()),
    ]
    assert replay_requests(probe_model, records, iterations=2) == 4
    assert replay_prediction_logs(probe_model, read_warmup_file(probe_dir)) == 3

    bad = RequestForSignature("regress_x", "regress", _regress_request(example_x=None))
    with pytest.raises(WarmupReplayError, match="x came from the context"):
        replay_requests(probe_model, [bad])


def test_validator_replay_takes_the_examples_value(probe_model):
    from tfx_serving_ext.checks.model_validation import check_request_answers
    from tfx_serving_ext.checks.requests import RequestForSignature
    from tfx_serving_ext.protocol.signatures import summarize_signatures

    summaries = summarize_signatures(probe_model.signature_defs)
    for kind, request in [("classify", _classify_request()), ("regress", _regress_request())]:
        name = request.model_spec.signature_name
        check = check_request_answers(
            probe_model, RequestForSignature(name, kind, request), summaries[name]
        )
        assert check.passed, check.message

    bad = RequestForSignature("regress_x", "regress", _regress_request(example_x=None))
    check = check_request_answers(probe_model, bad, summaries["regress_x"])
    assert not check.passed
    assert "x came from the context" in check.message


# ---- the embedded server -------------------------------------------------------------------


def test_server_warmup_with_context_lets_the_version_serve(probe_server):
    """Every warmup record sends the context's -10: had it won, the version would not load."""
    (version,) = probe_server.core.manager(MODEL).available_versions()
    assert version == 1


def test_server_grpc_takes_the_examples_value(probe_server):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(probe_server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        classified = stub.Classify(_classify_request(), timeout=30)
        assert classified.result.classifications[0].classes[0].score == EXPECTED
        regressed = stub.Regress(_regress_request(), timeout=30)
        assert [r.value for r in regressed.result.regressions] == [EXPECTED]
        assert regressed.model_spec.version.value == 1
        multi = stub.MultiInference(_multi_inference_request(), timeout=30)
        assert multi.results[0].classification_result.classifications[0].classes[0].score == (
            EXPECTED
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.Regress(_regress_request(example_x=None), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_server_rest_takes_the_examples_value(probe_server):
    def post(verb: str, body: dict):
        request = urllib.request.Request(
            f"{probe_server.rest_url}/v1/models/{MODEL}:{verb}",
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    body = {"context": {"x": CONTEXT_X}, "examples": [{"x": EXAMPLE_X}]}
    assert post("regress", {"signature_name": "regress_x", **body}) == (
        200,
        {"results": [EXPECTED]},
    )
    status, answer = post("classify", {"signature_name": "classify_x", **body})
    assert (status, answer["results"][0][0][1]) == (200, EXPECTED)
    status, answer = post(
        "regress", {"signature_name": "regress_x", "context": {"x": CONTEXT_X}, "examples": [{}]}
    )
    assert status == 400 and "x came from the context" in answer["error"]
