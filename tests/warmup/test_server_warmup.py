"""The embedded server loads a model warmed by the writer and replays its warmup file."""

from __future__ import annotations

import logging
import shutil

from tensorflow_serving.apis import classification_pb2

from tfx_serving_ext.checks.warmup import build_warmup_model
from tfx_serving_ext.testing.toy_models import make_examples


def test_embedded_server_loads_the_warmed_model_and_replays_the_file(
    warmup_models, tmp_path, caplog
):
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    result = build_warmup_model(
        warmup_models["half_plus_two"], tmp_path / "warmed", make_examples([1.0, 2.0, 3.0, 4.0])
    )
    base = tmp_path / "serving" / "hp2"
    base.mkdir(parents=True)
    shutil.copytree(tmp_path / "warmed" / "Format-Serving", base / "7")

    caplog.set_level(logging.INFO, logger="tfx_serving_ext.server")
    server = ModelServer(ServerOptions(model_name="hp2", model_base_path=str(base)))
    server.start()
    try:
        client = ServingClient(server.grpc_address)
        assert client.wait_until_available("hp2", timeout=60) == 7
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "hp2"
        request.model_spec.signature_name = "classify_x_to_y"
        request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
        response = client.raw_classify(request)
        assert response.result.classifications[0].classes[0].score == 3.0
        client.close()
    finally:
        server.stop()
    assert result.total_records == 12
    replayed = [r.getMessage() for r in caplog.records if "warmup data" in r.getMessage()]
    assert replayed == [
        "Finished reading warmup data for model hp2 version 7: 12 requests replayed"
    ]
