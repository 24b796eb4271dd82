"""Start-up and method names as tensorflow_model_server has them.

- With `wait_for_initial_models` (what `tfx-serving-ext serve` does), the ports open only once
  every initial model is AVAILABLE, so "the port answers" means "ready"; a model that cannot
  load stops the start with an error naming it.
- TF2 exports mark every signature `tensorflow/serving/predict`. TF Serving does not check
  method names unless --enable_signature_method_name_check, so Classify and Regress run such
  signatures when their inputs and outputs fit; so do the embedded server and the offline runner.
"""

from __future__ import annotations

import time

import pytest

from tests.server.conftest import HPT, example, publish
from tfx_serving_ext.checks.model_runner import LocalModel
from tfx_serving_ext.client.client import ServingClient, ServingError
from tfx_serving_ext.server import InitialModelsUnavailable, ModelServer, ServerOptions


@pytest.fixture(scope="module")
def tf2_example_model(tmp_path_factory):
    """A `tf.saved_model.save` export whose classify/regress-shaped signatures say `predict`."""
    import tensorflow as tf

    class Model(tf.Module):
        def _x(self, serialized):
            features = tf.io.parse_example(
                serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)}
            )
            return features["x"][:, 0]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs):
            x = self._x(inputs)
            scores = tf.stack([x, 0.5 * x + 2.0], axis=1)
            classes = tf.tile(tf.constant([["a", "b"]]), [tf.shape(x)[0], 1])
            return {"scores": scores, "classes": classes}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs):
            return {"outputs": 0.5 * self._x(inputs) + 2.0}

    model = Model()
    export = tmp_path_factory.mktemp("tf2") / "export"
    tf.saved_model.save(
        model, str(export), signatures={"classify_it": model.classify, "regress_it": model.regress}
    )
    return export


def test_tf2_signatures_classify_and_regress_as_in_tf_serving(tmp_path, tf2_example_model):
    base = tmp_path / "tf2"
    publish(tf2_example_model, base, 1)
    options = ServerOptions(model_name="tf2", model_base_path=str(base))
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        client.wait_until_available("tf2", timeout=60)
        classified = client.classify("tf2", [example(x=2.0)], signature_name="classify_it")
        [(label_a, score_a), (label_b, score_b)] = classified.classes[0]
        assert (label_a, label_b) == ("a", "b")
        assert (score_a, score_b) == pytest.approx((2.0, 3.0))
        regressed = client.regress("tf2", [example(x=2.0)], signature_name="regress_it")
        assert regressed.values == pytest.approx([3.0])

    strict = ServerOptions(
        model_name="tf2", model_base_path=str(base), enable_signature_method_name_check=True
    )
    with ModelServer(strict) as server, ServingClient(server.grpc_address) as client:
        client.wait_until_available("tf2", timeout=60)
        with pytest.raises(ServingError, match="Expected classification signature method_name"):
            client.classify("tf2", [example(x=2.0)], signature_name="classify_it")


def test_offline_runner_follows_the_same_rule(tf2_example_model):
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    request.model_spec.signature_name = "classify_it"
    request.input.example_list.examples.append(example(x=4.0))
    response = LocalModel(tf2_example_model).classify(request)
    scores = [c.score for c in response.result.classifications[0].classes]
    assert scores == pytest.approx([4.0, 4.0])


def test_ports_open_only_when_the_models_are_available(tmp_path, half_plus_two_dir):
    base = tmp_path / HPT
    publish(half_plus_two_dir, base, 123)
    options = ServerOptions(model_name=HPT, model_base_path=str(base), wait_for_initial_models=True)
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        # No polling: the first status after start() already says AVAILABLE.
        assert [(s.version, s.state) for s in client.model_status(HPT)] == [(123, "AVAILABLE")]
        assert client.predict(HPT, {"x": [2.0]}).outputs["y"].tolist() == [3.0]


def test_a_model_that_cannot_load_stops_the_start_naming_it(tmp_path, half_plus_two_dir):
    good = tmp_path / "good"
    publish(half_plus_two_dir, good, 1)
    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    config = tmp_path / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "good" base_path: "{good}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "broken" base_path: "{broken.parent}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    options = ServerOptions(
        model_config_file=str(config),
        wait_for_initial_models=True,
        max_num_load_retries=1,
        load_retry_interval_seconds=0.1,
    )
    started = time.monotonic()
    with pytest.raises(
        InitialModelsUnavailable, match=r"1 model\(s\) did not become available: broken"
    ):
        ModelServer(options).start()
    assert time.monotonic() - started < 60


def test_an_empty_volume_is_waited_for_up_to_the_timeout(tmp_path):
    base = tmp_path / "empty"
    base.mkdir()
    options = ServerOptions(
        model_name="m",
        model_base_path=str(base),
        wait_for_initial_models=True,
        initial_models_timeout_seconds=1.0,
    )
    with pytest.raises(InitialModelsUnavailable, match="m: not AVAILABLE within 1 s"):
        ModelServer(options).start()
