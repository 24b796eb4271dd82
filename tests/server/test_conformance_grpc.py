"""Conformance over gRPC on half-plus-two at version 00000123, after TF Serving's own tests."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    predict_pb2,
)

from tests.server.conftest import HPT, example
from tfx_serving_ext.client.client import ServingError


def test_status_reports_version_123_available(grpc_client):
    statuses = grpc_client.model_status(HPT)
    assert [(s.version, s.state, s.error_code) for s in statuses] == [(123, "AVAILABLE", "OK")]
    assert grpc_client.model_status(HPT, version=123)[0].state == "AVAILABLE"


def test_status_errors(grpc_client):
    with pytest.raises(ServingError) as info:
        grpc_client.model_status("nope")
    assert info.value.code == "NOT_FOUND"
    assert "nope" in info.value.message
    with pytest.raises(ServingError) as info:
        grpc_client.model_status(HPT, version=7)
    assert info.value.code == "NOT_FOUND"
    with pytest.raises(ServingError) as info:
        grpc_client.raw_model_status(get_model_status_pb2.GetModelStatusRequest())
    assert info.value.code == "INVALID_ARGUMENT"


def test_metadata_returns_signature_def_map(grpc_client):
    signatures = grpc_client.signature_defs(HPT)
    assert set(signatures) == {
        "serving_default",
        "classify_x_to_y",
        "regress_x_to_y",
        "regress_x2_to_y3",
    }
    assert signatures["classify_x_to_y"].method_name == "tensorflow/serving/classify"
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = HPT
    with pytest.raises(ServingError) as info:
        grpc_client.raw_metadata(request)  # no metadata_field
    assert info.value.code == "INVALID_ARGUMENT"
    request.metadata_field.append("signature_def")
    response = grpc_client.raw_metadata(request)
    assert response.model_spec.version.value == 123
    assert response.metadata["signature_def"].Is(get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR)


def test_predict_half_plus_two(grpc_client):
    result = grpc_client.predict(HPT, {"x": [2.0, 3.0, 4.0]})
    np.testing.assert_allclose(result.outputs["y"], [3.0, 3.5, 4.0])
    assert result.version == 123
    assert result.signature_name == "serving_default"
    assert grpc_client.predict(HPT, {"x": [[1.0]]}, version=123).outputs["y"].shape == (1, 1)


def test_prebuilt_predict_request_proto_echoes_model_spec(grpc_client):
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = HPT
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0], dtype=tf.float32))
    response = grpc_client.raw_predict(request)
    assert response.model_spec.name == HPT
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs["y"].float_val) == [3.0]


@pytest.mark.parametrize(
    ("kwargs", "code", "fragment"),
    [
        ({"model_name": "nope"}, "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        ({"version": 9}, "NOT_FOUND", f"Specific({HPT}, 9)"),
        ({"label": "stable"}, "INVALID_ARGUMENT", "stable"),
        ({"signature_name": "nope"}, "FAILED_PRECONDITION", 'Serving signature key "nope"'),
        ({"inputs": {"z": [1.0]}}, "INVALID_ARGUMENT", "input size does not match signature"),
        ({"inputs": {"x": ["a"]}}, "INVALID_ARGUMENT", "Expects arg[0] to be float"),
        ({"model_name": ""}, "INVALID_ARGUMENT", "model name"),
    ],
)
def test_predict_errors(grpc_client, kwargs, code, fragment):
    call = {"model_name": HPT, "inputs": {"x": [1.0]}, **kwargs}
    with pytest.raises(ServingError) as info:
        grpc_client.predict(**call)
    assert info.value.code == code
    assert fragment in info.value.message


def test_predict_wrong_dtype_sent_raw(grpc_client):
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = HPT
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1, 2], dtype=tf.int64))
    with pytest.raises(ServingError) as info:
        grpc_client.raw_predict(request)
    assert info.value.code == "INVALID_ARGUMENT"
    assert "Expects arg[0] to be float but int64 is provided" in info.value.message


def test_classify_and_regress(grpc_client):
    examples = [example(x=2.0), example(x=4.0)]
    classified = grpc_client.classify(HPT, examples, signature_name="classify_x_to_y")
    assert classified.classes == [[("", 3.0)], [("", 4.0)]]
    assert classified.version == 123
    regressed = grpc_client.regress(HPT, examples, signature_name="regress_x_to_y")
    assert regressed.values == [3.0, 4.0]
    # With a context, each example's features are merged over the context's.
    with_context = grpc_client.regress(
        HPT, [example(x=2.0)], signature_name="regress_x2_to_y3", context=example(x2=4.0)
    )
    assert with_context.values == [5.0]


def test_classify_regress_errors(grpc_client):
    with pytest.raises(ServingError) as info:
        grpc_client.classify(HPT, [example(x=1.0)], signature_name="nope")
    assert (info.value.code, info.value.message) == (
        "INVALID_ARGUMENT",
        "No signature was found with the name: nope",
    )
    # As tensorflow_model_server's default (no --enable_signature_method_name_check): the
    # method name is not checked, the outputs are: a classify signature has no regress output.
    with pytest.raises(ServingError) as info:
        grpc_client.regress(HPT, [example(x=1.0)], signature_name="classify_x_to_y")
    assert info.value.code == "INVALID_ARGUMENT"
    assert "No regression outputs found in SignatureDef" in info.value.message
    with pytest.raises(ServingError) as info:
        grpc_client.classify(HPT, [], signature_name="classify_x_to_y")
    assert info.value.code == "INVALID_ARGUMENT"
    with pytest.raises(ServingError) as info:  # the example lacks the required feature x
        grpc_client.regress(HPT, [example(y=1.0)], signature_name="regress_x_to_y")
    assert info.value.code == "INVALID_ARGUMENT"


def test_multi_inference(grpc_client):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in [
        ("classify_x_to_y", "tensorflow/serving/classify"),
        ("regress_x_to_y", "tensorflow/serving/regress"),
    ]:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = HPT
        task.model_spec.signature_name = signature
    request.input.example_list.examples.append(example(x=2.0))
    response = grpc_client.raw_multi_inference(request)
    assert response.results[0].classification_result.classifications[0].classes[0].score == 3.0
    assert response.results[1].regression_result.regressions[0].value == 3.0
    assert [r.model_spec.version.value for r in response.results] == [123, 123]

    request.tasks[1].model_spec.signature_name = "classify_x_to_y"
    request.tasks[1].method_name = "tensorflow/serving/classify"
    with pytest.raises(ServingError) as info:
        grpc_client.raw_multi_inference(request)
    assert info.value.message == "Duplicate evaluation of signature: classify_x_to_y"
    request.tasks[1].model_spec.name = "other"
    with pytest.raises(ServingError) as info:
        grpc_client.raw_multi_inference(request)
    assert "same model name" in info.value.message


def test_garbage_bytes_do_not_break_the_server(hpt_server, grpc_client):
    """A client sending bytes that are not a PredictRequest gets an error; serving goes on."""
    with grpc.insecure_channel(hpt_server.grpc_address) as channel:
        call = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError):
            call(b"\xff\xff\xff\xff garbage", timeout=10)
    assert grpc_client.predict(HPT, {"x": [2.0]}).outputs["y"].tolist() == [3.0]


def test_tiny_request_asking_for_a_huge_tensor_is_refused_and_serving_goes_on(grpc_client):
    """One float with shape [2**40] would be expanded to 4 TiB; the server refuses it."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HPT
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add(size=2**40)
    request.inputs["x"].float_val.append(1.0)
    with pytest.raises(ServingError) as info:
        grpc_client.raw_predict(request)
    assert info.value.code == "INVALID_ARGUMENT"
    assert "send the values themselves" in info.value.message
    assert grpc_client.predict(HPT, {"x": [2.0]}).outputs["y"].tolist() == [3.0]
