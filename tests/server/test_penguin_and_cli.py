"""The pipeline's penguin model (Keras export) served over gRPC and REST, and the serve command."""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest

from tests.server.conftest import publish
from tests.server.served_subprocess import serve_subprocess
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.server import ModelServer, ServerOptions

FEATURES = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]


@pytest.fixture(scope="module")
def penguin_server(tmp_path_factory, penguin_model_dir):
    base = tmp_path_factory.mktemp("penguin_base")
    publish(penguin_model_dir, base, 1)
    server = ModelServer(ServerOptions(model_name="penguin", model_base_path=str(base)))
    server.start()
    try:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available("penguin", timeout=60)
        yield server
    finally:
        server.stop()


def test_penguin_predictions_match_in_process(penguin_server, penguin_model_dir, penguin_examples):
    import tensorflow as tf

    examples = penguin_examples[:8]
    serialized = np.array([e.SerializeToString() for e in examples], dtype=object)
    loaded = tf.saved_model.load(str(penguin_model_dir))
    expected = {
        k: v.numpy()
        for k, v in loaded.signatures["serving_default"](examples=tf.constant(serialized)).items()
    }
    (output,) = expected
    for address, protocol in [
        (penguin_server.grpc_address, "grpc"),
        (penguin_server.rest_url, "rest"),
    ]:
        with ServingClient(address, protocol=protocol) as client:
            result = client.predict("penguin", {"examples": serialized})
            np.testing.assert_allclose(result.outputs[output], expected[output], rtol=1e-6)
            columns = {
                key: [e.features.feature[key].float_list.value[0] for e in examples]
                for key in FEATURES
            }
            by_features = client.predict("penguin", columns, signature_name="predict_features")
            np.testing.assert_allclose(by_features.outputs[output], expected[output], rtol=1e-5)
            signatures = client.signature_defs("penguin")
            assert (
                signatures["serving_default"].inputs["examples"].dtype == tf.string.as_datatype_enum
            )


def test_serve_command_listens_and_stops_on_sigterm(tmp_path, half_plus_two_dir):
    with serve_subprocess(half_plus_two_dir, tmp_path / "base", "hpt") as served:
        with ServingClient(served.grpc_address) as client:
            assert client.wait_until_available("hpt", timeout=60) == 123
            assert client.predict("hpt", {"x": [2.0]}).outputs["y"].tolist() == [3.0]
        with ServingClient(served.rest_url, protocol="rest") as client:
            assert client.predict("hpt", {"x": [4.0]}).outputs["y"].tolist() == [4.0]
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=60) == 0, served.describe_exit()
        deadline = time.monotonic() + 10
        while "Server stopped" not in "".join(served.output) and time.monotonic() < deadline:
            time.sleep(0.1)  # the reader thread may still be taking the last lines
        assert "Server stopped" in "".join(served.output), served.describe_exit()
