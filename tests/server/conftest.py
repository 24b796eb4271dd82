"""Fixtures for the embedded server tests: reference models built once, servers on loopback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HPT = "half_plus_two"


@pytest.fixture(scope="session")
def half_plus_two_dir(tmp_path_factory) -> Path:
    """A half-plus-two SavedModel (TF1 graph with classify/regress signatures); do not modify."""
    from tfx_serving_ext.testing.half_plus_two import build_half_plus_two

    return build_half_plus_two(tmp_path_factory.mktemp("hpt_model") / "saved_model")


@pytest.fixture(scope="session")
def counter_model_dir(tmp_path_factory) -> Path:
    """A TF2 model that counts its calls: `serving_default` (x -> y = 0.5 x + 2, counting) and
    `count` (no inputs -> `calls`), so a test can see how many warmup requests ran."""
    import tensorflow as tf

    class Counter(tf.Module):
        def __init__(self):
            super().__init__()
            self.calls = tf.Variable(0, dtype=tf.int64)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            self.calls.assign_add(1)
            return {"y": x * 0.5 + 2.0}

        @tf.function(input_signature=[])
        def count(self):
            return {"calls": self.calls.read_value()}

    module = Counter()
    path = tmp_path_factory.mktemp("counter_model") / "saved_model"
    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.predict, "count": module.count}
    )
    return path


def publish(model_dir: Path, base: Path, version: int, name: str | None = None) -> Path:
    """Returns the version directory after copying a model under a temp name and renaming it."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".staging-{version}"
    shutil.copytree(model_dir, staging)
    target = base / (name or str(version))
    staging.rename(target)
    return target


def write_warmup(version_dir: Path, logs: list) -> Path:
    """Writes PredictionLogs as the version's assets.extra/tf_serving_warmup_requests."""
    import tensorflow as tf

    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def predict_log(inputs: dict, signature_name: str = "serving_default"):
    """Returns a PredictionLog holding a PredictRequest of float32 inputs."""
    import numpy as np
    from tensorflow_serving.apis import prediction_log_pb2

    from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto

    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = "ignored"
    request.model_spec.signature_name = signature_name
    for key, value in inputs.items():
        ndarray_to_tensor_proto(np.asarray(value, dtype=np.float32), request.inputs[key])
    return log


def example(**features):
    """Returns a tf.train.Example with float features."""
    import tensorflow as tf

    result = tf.train.Example()
    for key, value in features.items():
        result.features.feature[key].float_list.value.extend(
            value if isinstance(value, list) else [value]
        )
    return result


@pytest.fixture(scope="module")
def hpt_server(tmp_path_factory, half_plus_two_dir):
    """A ModelServer serving half_plus_two at version 00000123 (both APIs, short polls)."""
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = tmp_path_factory.mktemp("hpt_base")
    publish(half_plus_two_dir, base, 123, name="00000123")
    server = ModelServer(
        ServerOptions(
            model_name=HPT,
            model_base_path=str(base),
            file_system_poll_wait_seconds=0.1,
            rest_api_max_body_bytes=1024 * 1024,
        )
    )
    server.start()
    try:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(HPT, timeout=60)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def grpc_client(hpt_server):
    from tfx_serving_ext.client.client import ServingClient

    with ServingClient(hpt_server.grpc_address, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def rest_client(hpt_server):
    from tfx_serving_ext.client.client import ServingClient

    with ServingClient(hpt_server.rest_url, protocol="rest", timeout=30) as client:
        yield client
