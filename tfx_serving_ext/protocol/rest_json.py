"""TF Serving's REST JSON formats: row/columnar tensors, b64 strings, examples and results."""

from __future__ import annotations

import base64

import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import input_pb2, predict_pb2

from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import invalid_argument

_B64 = "b64"


def _decode_string_leaf(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {_B64} and isinstance(value[_B64], str):
        try:
            return base64.b64decode(value[_B64], validate=True)
        except ValueError as exc:
            raise invalid_argument(f"Unable to base64 decode {value[_B64]!r}: {exc}") from None
    raise invalid_argument(
        f"JSON Value: {_short(value)} Type: {_json_type(value)} is not of expected type: string"
    )


def _string_array(value) -> np.ndarray:
    def shape_of(v):
        if isinstance(v, list):
            inner = [shape_of(x) for x in v]
            if inner and any(s != inner[0] for s in inner):
                raise invalid_argument("Expected a list of lists of equal length (a tensor)")
            return [len(v)] + (inner[0] if inner else [])
        return []

    shape = shape_of(value)
    flat: list = []

    def collect(v):
        if isinstance(v, list):
            for x in v:
                collect(x)
        else:
            flat.append(_decode_string_leaf(v))

    collect(value)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def json_to_ndarray(value, dtype: int, name: str = "") -> np.ndarray:
    """Returns a JSON value (nested lists) as an array of the signature's dtype.

    Raises:
        ServingError: INVALID_ARGUMENT for a value of the wrong type or a ragged list.
    """
    if dtype == types_pb2.DT_STRING:
        return _string_array(value)
    target = tensors.numpy_dtype(dtype)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise invalid_argument(
            f"Input '{name}' is not a tensor: lists must be rectangular and hold numbers"
        ) from None
    kind = array.dtype.kind
    ok = (
        kind in "iu"
        or (kind == "f" and target.kind in "fc")
        or (kind == "b" and target.kind == "b")
        or (array.size == 0 and kind == "f")
    )
    if not ok:
        leaf = array.ravel()[0] if array.size else value
        raise invalid_argument(
            f"JSON Value: {_short(leaf)} Type: {_json_type(leaf)} is not of expected type: "
            f"{tensors.dtype_name(dtype)}"
        )
    if kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise invalid_argument(f"Input '{name}' holds a value out of range for {target}")
    return array.astype(target, copy=False)


def _json_type(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return {str: "String", bool: "Boolean", dict: "Object", list: "Array"}.get(
        type(value),
        "Number" if isinstance(value, (int, float, np.number)) else type(value).__name__,
    )


def _short(value) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) < 80 else text[:77] + "..."


def predict_request_from_json(
    body, signature_name: str, signature: meta_graph_pb2.SignatureDef
) -> tuple[predict_pb2.PredictRequest, bool]:
    """Returns (PredictRequest, row_format) for a REST predict body.

    Raises:
        ServingError: INVALID_ARGUMENT for a body that is not TF Serving's format.
    """
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise invalid_argument(
            'JSON object must have exactly one of "instances" (row format) or "inputs" '
            "(columnar format)"
        )
    inputs = signature.inputs
    columns: dict[str, object] = {}
    if has_instances:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid_argument('"instances" must be a non-empty JSON list')
        keyed = all(isinstance(i, dict) and _B64 not in i for i in instances)
        if len(inputs) > 1 or (keyed and len(inputs) == 1 and set(instances[0]) <= set(inputs)):
            if not keyed:
                raise invalid_argument(
                    'Expected every element of "instances" to be a JSON object keyed by the '
                    f"signature's inputs {sorted(inputs)}"
                )
            names = set(instances[0])
            for index, instance in enumerate(instances):
                if set(instance) != names:
                    raise invalid_argument(
                        f"Failed to process element: {index} of 'instances' list. Keys "
                        f"{sorted(instance)} differ from the first element's {sorted(names)}"
                    )
            columns = {n: [i[n] for i in instances] for n in names}
        else:
            columns = {next(iter(inputs)): instances} if inputs else {}
    else:
        value = body["inputs"]
        if isinstance(value, dict) and _B64 not in value:
            columns = dict(value)
        elif len(inputs) == 1:
            columns = {next(iter(inputs)): value}
        else:
            raise invalid_argument(
                f'"inputs" must be a JSON object keyed by the signature\'s inputs {sorted(inputs)}'
            )
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, value in columns.items():
        if name not in inputs:
            # Let the servable report the mismatch with TF Serving's message.
            request.inputs[name].dtype = types_pb2.DT_FLOAT
            continue
        array = json_to_ndarray(value, inputs[name].dtype, name)
        tensors.ndarray_to_tensor_proto(array, request.inputs[name])
    return request, has_instances


def _output_value(alias: str, array: np.ndarray):
    if array.dtype == object:
        force_b64 = alias.endswith("_bytes")

        def convert(v):
            if isinstance(v, list):
                return [convert(x) for x in v]
            if not force_b64:
                try:
                    return v.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {_B64: base64.b64encode(v).decode("ascii")}

        return convert(array.tolist())
    return array.tolist()


def predict_response_to_json(response: predict_pb2.PredictResponse, row_format: bool) -> dict:
    """Returns the REST body for a PredictResponse: predictions (row) or outputs (columnar).

    Raises:
        ServingError: INVALID_ARGUMENT when row format is asked for outputs whose batch
            sizes differ.
    """
    arrays = {k: tensors.tensor_proto_to_ndarray(v) for k, v in response.outputs.items()}

    value = _output_value
    if not row_format:
        if len(arrays) == 1:
            ((alias, array),) = arrays.items()
            return {"outputs": value(alias, array)}
        return {"outputs": {k: value(k, v) for k, v in sorted(arrays.items())}}
    batch = None
    for alias, array in arrays.items():
        size = array.shape[0] if array.ndim else None
        if size is None or (batch is not None and size != batch):
            raise invalid_argument(
                f"Tensor name: {alias} has inconsistent batch size: {size} expecting: {batch}"
            )
        batch = size
    if len(arrays) == 1:
        ((alias, array),) = arrays.items()
        return {"predictions": value(alias, array)}
    columns = {k: value(k, v) for k, v in sorted(arrays.items())}
    return {"predictions": [{k: col[i] for k, col in columns.items()} for i in range(batch or 0)]}


def _feature(name: str, value) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    feature = feature_pb2.Feature()
    if not values:
        feature.float_list.SetInParent()
        return feature
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        feature.int64_list.value.extend(values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        feature.float_list.value.extend(values)
    elif all(isinstance(v, (str, dict)) for v in values):
        feature.bytes_list.value.extend(_decode_string_leaf(v) for v in values)
    else:
        raise invalid_argument(
            f"Feature '{name}': values must all be numbers or all be strings/b64 objects, "
            f"got {_short(value)}"
        )
    return feature


def _example(obj, where: str) -> example_pb2.Example:
    if not isinstance(obj, dict):
        raise invalid_argument(f"{where} must be a JSON object of feature name to value")
    example = example_pb2.Example()
    for name, value in obj.items():
        example.features.feature[name].CopyFrom(_feature(name, value))
    return example


def examples_from_json(body: dict) -> tuple[str, input_pb2.Input]:
    """Returns (signature_name, Input) for a REST classify/regress body.

    Raises:
        ServingError: INVALID_ARGUMENT for a body without a list of example objects.
    """
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid_argument('"examples" must be a non-empty JSON list of objects')
    model_input = input_pb2.Input()
    if "context" in body:
        target = model_input.example_list_with_context
        target.context.CopyFrom(_example(body["context"], '"context"'))
    else:
        target = model_input.example_list
    for index, obj in enumerate(examples):
        target.examples.append(_example(obj, f"examples[{index}]"))
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument('"signature_name" must be a string')
    return signature_name, model_input


def classification_to_json(result) -> dict:
    """Returns {"results": [[[label, score], ...], ...]} for a ClassificationResult."""
    return {
        "results": [
            [[c.label, c.score] for c in classifications.classes]
            for classifications in result.classifications
        ]
    }


def regression_to_json(result) -> dict:
    """Returns {"results": [value, ...]} for a RegressionResult."""
    return {"results": [r.value for r in result.regressions]}


def message_to_json(message) -> dict:
    """Returns a proto as TF Serving prints it (field names as in the proto, defaults shown)."""
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


def metadata_to_json(response) -> dict:
    """Returns the REST body of GetModelMetadata: the SignatureDefMap under metadata."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {
        "model_spec": message_to_json(response.model_spec),
        "metadata": {"signature_def": message_to_json(signature_map)},
    }
