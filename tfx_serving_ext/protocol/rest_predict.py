"""TF Serving's REST predict bodies, both ways: requests (row or columnar) and their answers.

The client sends columnar requests keyed by input name (strings always as b64, which TF Serving
accepts for any string input) straight from its numpy inputs, and reads `outputs` straight into
numpy; the server reads either format into the PredictRequest the servable runs, as gRPC does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2

from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import ServingError, invalid_argument
from tfx_serving_ext.protocol.rest_json import (
    is_b64,
    json_shape,
    json_to_ndarray,
    ndarray_to_json,
    short,
)

# ---- requests -----------------------------------------------------------------------------


def predict_request_to_json(signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
    """Returns the columnar REST predict body for named input arrays.

    Raises:
        ServingError: INVALID_ARGUMENT for an array of a numpy dtype no tensor carries.
    """
    return {
        "signature_name": signature_name,
        "inputs": {name: ndarray_to_json(array, always_b64=True) for name, array in inputs.items()},
    }


def _columns(body: dict, inputs) -> tuple[dict[str, object], bool]:
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise invalid_argument(
            'JSON object must have exactly one of "instances" (row format) or "inputs" '
            "(columnar format)"
        )
    if has_inputs:
        value = body["inputs"]
        if isinstance(value, dict) and not is_b64(value):
            return dict(value), False
        if len(inputs) == 1:
            return {next(iter(inputs)): value}, False
        raise invalid_argument(
            f'"inputs" must be a JSON object keyed by the signature\'s inputs {sorted(inputs)}'
        )
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise invalid_argument('"instances" must be a non-empty JSON list')
    keyed = all(isinstance(i, dict) and not is_b64(i) for i in instances)
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
        return {n: [i[n] for i in instances] for n in names}, True
    return ({next(iter(inputs)): instances} if inputs else {}), True


def predict_request_from_json(
    body: dict, signature_name: str, signature: meta_graph_pb2.SignatureDef
) -> tuple[predict_pb2.PredictRequest, bool]:
    """Returns (PredictRequest, row_format) for a REST predict body.

    The request carries `signature_name` but no model name or version (the route says those).

    Raises:
        ServingError: INVALID_ARGUMENT for a body that is not TF Serving's format.
    """
    columns, row_format = _columns(body, signature.inputs)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, value in columns.items():
        if name not in signature.inputs:
            # Let the servable report the mismatch with TF Serving's message.
            request.inputs[name].dtype = types_pb2.DT_FLOAT
            continue
        # The rank is checked against the signature before numpy sees the value.
        tensors.check_tensor_rank(name, len(json_shape(value)), signature.inputs[name])
        array = json_to_ndarray(value, signature.inputs[name].dtype, name)
        tensors.ndarray_to_tensor_proto(array, request.inputs[name], packed=True)
    return request, row_format


# ---- answers ------------------------------------------------------------------------------


def _output_json(alias: str, array: np.ndarray):
    # TF Serving writes string outputs as text unless the alias ends in "_bytes".
    return ndarray_to_json(array, always_b64=alias.endswith("_bytes"))


def predict_response_to_json(response: predict_pb2.PredictResponse, row_format: bool) -> dict:
    """Returns the REST body for a PredictResponse: predictions (row) or outputs (columnar).

    Raises:
        ServingError: INVALID_ARGUMENT when row format is asked for outputs whose batch
            sizes differ.
    """
    arrays = {k: tensors.tensor_proto_to_ndarray(v) for k, v in response.outputs.items()}
    return predict_arrays_to_json(arrays, row_format)


def predict_arrays_to_json(arrays: Mapping[str, np.ndarray], row_format: bool) -> dict:
    """Returns the REST body for output arrays by alias: predictions (row) or outputs (columnar).

    Raises:
        ServingError: as `predict_response_to_json`.
    """
    if not row_format:
        if len(arrays) == 1:
            ((alias, array),) = arrays.items()
            return {"outputs": _output_json(alias, array)}
        return {"outputs": {k: _output_json(k, v) for k, v in sorted(arrays.items())}}
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
        return {"predictions": _output_json(alias, array)}
    columns = {k: _output_json(k, v) for k, v in sorted(arrays.items())}
    return {"predictions": [{k: col[i] for k, col in columns.items()} for i in range(batch or 0)]}


def predict_outputs_from_json(
    body: dict, signature: meta_graph_pb2.SignatureDef, output_filter: Iterable[str] = ()
) -> dict[str, np.ndarray]:
    """Returns the output arrays of a columnar REST predict answer, in the signature's dtypes.

    A single output comes back bare; it is named after `output_filter` or the signature.

    Raises:
        ServingError: INVALID_ARGUMENT for values that do not fit the signature's dtypes,
            INTERNAL for a body without "outputs" or a bare output the signature cannot name.
    """
    if not isinstance(body, dict) or "outputs" not in body:
        raise ServingError("INTERNAL", f'REST predict answer has no "outputs": {short(body)}')
    outputs = body["outputs"]
    aliases = list(output_filter) or sorted(signature.outputs)
    if not isinstance(outputs, dict) or (len(aliases) == 1 and aliases[0] not in outputs):
        if not aliases:
            raise ServingError(
                "INTERNAL", "REST predict answer holds one unnamed output and no signature names it"
            )
        outputs = {aliases[0]: outputs}
    return {
        alias: json_to_ndarray(
            value, signature.outputs[alias].dtype if alias in signature.outputs else None, alias
        )
        for alias, value in outputs.items()
    }
