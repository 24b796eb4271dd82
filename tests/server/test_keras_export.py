"""Keras exports served as TF Serving serves them (issue 14's conformance, item 3).

Two exports of one tiny `keras` model (y = x0 + 2 x1 + 0.5, weights set, so answers are exact):
`model.export()` as a user writes it (one `serving_default` taking `features`), and a Keras
`ExportArchive` with the example-parsing `classify` / `regress` endpoints a TFX trainer adds. Keras
marks every signature `tensorflow/serving/predict`; TF Serving's default
(`--enable_signature_method_name_check=false`) still runs Classify and Regress on
signatures whose inputs and outputs fit, and refuses them with the check on. MultiInference
needs one input tensor shared by its signatures, which separate Keras endpoints never have.
"""

from __future__ import annotations

import json
import math
import urllib.request

import numpy as np
import pytest
from tensorflow_serving.apis import inference_pb2

from tests.server.conftest import example
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.protocol import model_config as config_lib
from tfx_serving_ext.protocol.errors import ServingError
from tfx_serving_ext.server import ModelServer, ServerOptions

PLAIN, EXAMPLES = "keras_plain", "keras_examples"


def expected(x0: float, x1: float) -> float:
    return x0 + 2 * x1 + 0.5


@pytest.fixture(scope="module")
def keras_config(tmp_path_factory) -> str:
    """A model config file serving both Keras exports as version 1."""
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("keras")
    features = keras.Input(shape=(2,), name="features")
    dense = keras.layers.Dense(1, name="y")
    model = keras.Model(features, dense(features))
    dense.set_weights([np.array([[1.0], [2.0]], np.float32), np.array([0.5], np.float32)])
    model.export(str(root / PLAIN / "1"), verbose=False)

    feature_spec = {
        "x0": tf.io.FixedLenFeature([1], tf.float32),
        "x1": tf.io.FixedLenFeature([1], tf.float32),
    }

    def from_examples(serialized):
        parsed = tf.io.parse_example(serialized, feature_spec)
        return model(tf.concat([parsed["x0"], parsed["x1"]], axis=1))

    examples_spec = [tf.TensorSpec([None], tf.string, name="inputs")]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        lambda features: {"y": model(features)},
        input_signature=[tf.TensorSpec([None, 2], tf.float32, name="features")],
    )
    archive.add_endpoint(
        "regress",
        lambda inputs: {"outputs": tf.squeeze(from_examples(inputs), -1)},
        input_signature=examples_spec,
    )
    archive.add_endpoint(
        "classify",
        lambda inputs: {"scores": tf.sigmoid(from_examples(inputs))},
        input_signature=examples_spec,
    )
    archive.write_out(str(root / EXAMPLES / "1"), verbose=False)

    config_file = root / "models.config"
    config_file.write_text(
        config_lib.model_server_config_text([(PLAIN, root / PLAIN), (EXAMPLES, root / EXAMPLES)])
    )
    return str(config_file)


@pytest.fixture(scope="module")
def keras_server(keras_config):
    options = ServerOptions(model_config_file=keras_config, wait_for_initial_models=True)
    server = ModelServer(options).start()
    try:
        yield server
    finally:
        server.stop()


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_model_export_answers_predict_over_grpc_and_rest(keras_server):
    with ServingClient(keras_server.grpc_address) as client:
        result = client.predict(PLAIN, {"features": [[1.0, 2.0], [3.0, 4.0]]})
        signature = client.signature_defs(PLAIN)["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert list(signature.inputs) == ["features"]
    (output,) = result.outputs.values()
    np.testing.assert_allclose(output[:, 0], [expected(1, 2), expected(3, 4)], rtol=1e-6)
    assert result.version == 1
    url = f"{keras_server.rest_url}/v1/models/{PLAIN}:predict"
    rows = post(url, {"instances": [[1.0, 2.0]]})["predictions"]
    np.testing.assert_allclose(rows, [[expected(1, 2)]], rtol=1e-6)
    columns = post(url, {"inputs": {"features": [[3.0, 4.0]]}})["outputs"]
    np.testing.assert_allclose(columns, [[expected(3, 4)]], rtol=1e-6)


def test_keras_example_signatures_answer_classify_and_regress(keras_server):
    examples = [example(x0=1.0, x1=2.0), example(x0=3.0, x1=4.0)]
    with ServingClient(keras_server.grpc_address) as client:
        regressed = client.regress(EXAMPLES, examples, signature_name="regress")
        classified = client.classify(EXAMPLES, examples, signature_name="classify")
        request = inference_pb2.MultiInferenceRequest()
        for name, method in [("classify", "classify"), ("regress", "regress")]:
            task = request.tasks.add(method_name=f"tensorflow/serving/{method}")
            task.model_spec.name = EXAMPLES
            task.model_spec.signature_name = name
        request.input.example_list.examples.extend(examples[:1])
        # Each Keras endpoint has its own input placeholder, and TF Serving's MultiInference
        # runs tasks only on one shared input tensor: refused there, refused here.
        with pytest.raises(ServingError) as info:
            client.raw_multi_inference(request)
    np.testing.assert_allclose(regressed.values, [expected(1, 2), expected(3, 4)], rtol=1e-6)
    scores = [pairs[0][1] for pairs in classified.classes]
    sigmoid = [1 / (1 + math.exp(-expected(1, 2))), 1 / (1 + math.exp(-expected(3, 4)))]
    np.testing.assert_allclose(scores, sigmoid, rtol=1e-5)
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message == "Input tensor must be the same for all Signatures."
    url = f"{keras_server.rest_url}/v1/models/{EXAMPLES}:regress"
    answer = post(url, {"signature_name": "regress", "examples": [{"x0": 1.0, "x1": 2.0}]})
    np.testing.assert_allclose(answer["results"], [expected(1, 2)], rtol=1e-6)


def test_with_the_method_name_check_keras_signatures_are_refused(keras_config):
    options = ServerOptions(
        model_config_file=keras_config,
        wait_for_initial_models=True,
        enable_signature_method_name_check=True,
    )
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        with pytest.raises(ServingError) as info:
            client.regress(EXAMPLES, [example(x0=1.0, x1=2.0)], signature_name="regress")
        assert info.value.code == "INVALID_ARGUMENT"
        assert "method_name" in info.value.message
        assert client.predict(PLAIN, {"features": [[1.0, 2.0]]}).version == 1
