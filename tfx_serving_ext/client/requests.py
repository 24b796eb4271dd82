"""Builds what ServingClient sends: model specs, predict inputs in the signature's dtypes, and
the one `input_pb2.Input` every Classify/Regress request carries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import input_pb2, model_pb2

from tfx_serving_ext.protocol.tensors import numpy_dtype

DEFAULT_SIGNATURE = "serving_default"


def set_spec(
    spec: model_pb2.ModelSpec,
    model_name: str,
    signature_name: str | None,
    version: int | None,
    label: str | None,
) -> model_pb2.ModelSpec:
    """Returns `spec` filled in: name, signature (if given), and a version or else a label."""
    spec.name = model_name
    if signature_name is not None:
        spec.signature_name = signature_name
    if version is not None:
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label
    return spec


def cast_input(array: np.ndarray, dtype: int | None) -> np.ndarray:
    """Returns `array` in the signature's dtype when it converts; else as is (the server judges).

    str becomes UTF-8 bytes; with no known dtype, float64 becomes float32 (what models take).
    """
    if array.dtype.kind == "U":
        flat = [v.encode("utf-8") for v in array.ravel().tolist()]
        strings = np.empty(len(flat), dtype=object)
        strings[:] = flat
        array = strings.reshape(array.shape)
    if dtype and dtype != types_pb2.DT_STRING and array.dtype != object:
        try:
            return array.astype(numpy_dtype(dtype), copy=False)
        except (ValueError, TypeError, OverflowError):
            return array
    if not dtype and array.dtype == np.float64:
        return array.astype(np.float32)
    return array


def predict_inputs(
    inputs: Mapping[str, object], signature: meta_graph_pb2.SignatureDef
) -> dict[str, np.ndarray]:
    """Returns each input (any array-like) as an array cast to the signature's dtype."""
    arrays = {}
    for name, value in inputs.items():
        spec = signature.inputs.get(name)
        arrays[name] = cast_input(np.asarray(value), spec.dtype if spec is not None else None)
    return arrays


def examples_input(
    examples: input_pb2.Input | Iterable[example_pb2.Example | bytes],
    context: example_pb2.Example | None = None,
) -> input_pb2.Input:
    """Returns the Input of a Classify/Regress request: tf.Examples (protos or serialized
    bytes), with `context` merged under each one when given; an Input is returned as is."""
    if isinstance(examples, input_pb2.Input):
        return examples
    model_input = input_pb2.Input()
    parsed = [
        e if isinstance(e, example_pb2.Example) else example_pb2.Example.FromString(e)
        for e in examples
    ]
    if context is not None:
        model_input.example_list_with_context.context.CopyFrom(context)
        model_input.example_list_with_context.examples.extend(parsed)
    else:
        model_input.example_list.examples.extend(parsed)
    return model_input
