"""The one REST codec: what the client encodes, the server decodes to the same tensors and
examples, and the other way round (through real JSON text, as on the wire)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, regression_pb2

from tfx_serving_ext.client.requests import examples_input, predict_inputs
from tfx_serving_ext.protocol import rest_examples, rest_json, rest_predict
from tfx_serving_ext.protocol.errors import ServingError
from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto, tensor_proto_to_ndarray

RAW = b"\x00\xffab"


def wire(body):
    """Returns `body` as the other side reads it: JSON text and back."""
    return json.loads(json.dumps(body))


def signature(inputs: dict[str, int], outputs: dict[str, int]) -> meta_graph_pb2.SignatureDef:
    result = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for name, dtype in inputs.items():
        result.inputs[name].dtype = dtype
    for name, dtype in outputs.items():
        result.outputs[name].dtype = dtype
    return result


def test_client_predict_body_decodes_to_the_same_tensors_on_the_server():
    sig = signature(
        {"x": types_pb2.DT_FLOAT, "ids": types_pb2.DT_INT64, "text": types_pb2.DT_STRING},
        {"y": types_pb2.DT_FLOAT},
    )
    arrays = predict_inputs(
        {
            "x": [[0.1, 2.0], [3.5, -1.0]],
            "ids": [1, 2**40],
            "text": np.array([[RAW, b"plain"], ["h\u00e9", b""]], dtype=object),
        },
        sig,
    )
    body = wire(rest_predict.predict_request_to_json("serving_default", arrays))
    assert body["inputs"]["text"][0][0] == {"b64": base64.b64encode(RAW).decode()}

    request, row_format = rest_predict.predict_request_from_json(body, "serving_default", sig)
    assert not row_format
    assert request.model_spec.signature_name == "serving_default"
    decoded = {k: tensor_proto_to_ndarray(v) for k, v in request.inputs.items()}
    assert set(decoded) == {"x", "ids", "text"}
    assert decoded["x"].dtype == np.float32
    np.testing.assert_array_equal(decoded["x"], arrays["x"])
    assert decoded["ids"].dtype == np.int64
    assert decoded["ids"].tolist() == [1, 2**40]
    assert decoded["text"].tolist() == [[RAW, b"plain"], ["h\u00e9".encode(), b""]]
    assert request.inputs["x"].dtype == types_pb2.DT_FLOAT


def test_server_reads_row_format_objects_for_several_inputs():
    sig = signature({"a": types_pb2.DT_FLOAT, "s": types_pb2.DT_STRING}, {})
    body = {
        "instances": [
            {"a": 1.0, "s": {"b64": base64.b64encode(RAW).decode()}},
            {"a": 2.0, "s": "text"},
        ]
    }
    request, row_format = rest_predict.predict_request_from_json(wire(body), "sig", sig)
    assert row_format
    assert tensor_proto_to_ndarray(request.inputs["a"]).tolist() == [1.0, 2.0]
    assert tensor_proto_to_ndarray(request.inputs["s"]).tolist() == [RAW, b"text"]


@pytest.mark.parametrize("filtered", [False, True])
def test_server_predict_answer_decodes_to_the_same_arrays_on_the_client(filtered):
    outputs = {
        "score": np.array([[0.25], [1.5]], dtype=np.float32),
        "count": np.array([3, 4], dtype=np.int32),
        "label": np.array([b"cat", RAW], dtype=object),
        "raw_bytes": np.array([b"dog", b"cow"], dtype=object),
    }
    sig = signature({}, {k: types_pb2.DT_FLOAT for k in outputs})
    sig.outputs["count"].dtype = types_pb2.DT_INT32
    sig.outputs["label"].dtype = sig.outputs["raw_bytes"].dtype = types_pb2.DT_STRING
    response = predict_pb2.PredictResponse()
    for alias, array in outputs.items():
        ndarray_to_tensor_proto(array, response.outputs[alias])

    body = wire(rest_predict.predict_response_to_json(response, row_format=False))
    assert body["outputs"]["label"] == ["cat", {"b64": base64.b64encode(RAW).decode()}]
    assert body["outputs"]["raw_bytes"][0] == {"b64": base64.b64encode(b"dog").decode()}
    decoded = rest_predict.predict_outputs_from_json(body, sig, ["score"] if filtered else ())
    assert set(decoded) == set(outputs)
    for alias, array in outputs.items():
        assert decoded[alias].dtype == array.dtype, alias
        assert decoded[alias].tolist() == array.tolist(), alias


def test_a_single_bare_output_is_named_by_the_signature():
    sig = signature({"x": types_pb2.DT_FLOAT}, {"y": types_pb2.DT_FLOAT})
    response = predict_pb2.PredictResponse()
    ndarray_to_tensor_proto(np.array([3.0, 3.5], dtype=np.float32), response.outputs["y"])
    body = wire(rest_predict.predict_response_to_json(response, row_format=False))
    assert body == {"outputs": [3.0, 3.5]}
    decoded = rest_predict.predict_outputs_from_json(body, sig)
    assert decoded["y"].dtype == np.float32
    assert decoded["y"].tolist() == [3.0, 3.5]


def test_client_examples_decode_to_the_same_input_on_the_server():
    context = example_pb2.Example()
    context.features.feature["country"].bytes_list.value.append(RAW)
    first, second = example_pb2.Example(), example_pb2.Example()
    first.features.feature["x"].float_list.value.extend([0.1, 2.0])
    first.features.feature["n"].int64_list.value.append(7)
    second.features.feature["word"].bytes_list.value.extend([b"h\xc3\xa9", b"x"])
    for model_input in (
        examples_input([first, second.SerializeToString()]),
        examples_input([first, second], context=context),
    ):
        body = wire(rest_examples.input_to_json("classify_x_to_y", model_input))
        signature_name, decoded = rest_examples.input_from_json(body)
        assert signature_name == "classify_x_to_y"
        assert decoded == model_input


def test_results_round_trip():
    classification = classification_pb2.ClassificationResult()
    row = classification.classifications.add()
    row.classes.add(label="a", score=0.25)
    row.classes.add(label="b", score=0.75)
    body = wire(rest_examples.classification_to_json(classification))
    assert body == {"results": [[["a", 0.25], ["b", 0.75]]]}
    assert rest_examples.classification_from_json(body) == classification

    regression = regression_pb2.RegressionResult()
    regression.regressions.add(value=3.5)
    body = wire(rest_examples.regression_to_json(regression))
    assert body == {"results": [3.5]}
    assert rest_examples.regression_from_json(body) == regression


def test_errors_round_trip_by_http_status():
    error = ServingError("NOT_FOUND", "Servable not found for request: Latest(m)")
    decoded = rest_json.error_from_json(error.http_status, wire(rest_json.error_to_json(error)), "")
    assert (decoded.code, decoded.message) == (error.code, error.message)


@pytest.mark.parametrize(
    "array",
    [
        np.array([[1.5, -2.0]], dtype=np.float32),
        np.array([1, 2, 3], dtype=np.int64),
        np.array([True, False]),
        np.array([0.5], dtype=np.float16),
        np.array(7, dtype=np.uint8),
        np.zeros((0, 3), dtype=np.float64),
    ],
)
def test_packed_tensors_read_back_the_same(array):
    proto = ndarray_to_tensor_proto(array, packed=True)
    assert proto.tensor_content or array.size == 0
    back = tensor_proto_to_ndarray(proto)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
