"""Builds the requests TF Serving would get for a signature, from tf.Examples.

- classify / regress signatures: `ClassificationRequest` / `RegressionRequest` with the examples
  in `input.example_list`;
- a predict signature with one DT_STRING input that is not a feature name: `PredictRequest`
  with the serialized examples in that input (the TFX Trainer's `serving_default`);
- a predict signature with typed inputs: `PredictRequest` with one tensor per input, filled from
  the example feature of the same name. A signature the examples cannot fill (a missing feature,
  a list of the wrong length, a dtype the feature cannot become) is reported and skipped, never
  guessed.

Used by the WarmupRequestWriter (warmup records), the SignatureValidator (one batch per
signature) and the canary (its traffic). The request-kind rules follow TFX InfraValidator's
request_builder, extended to typed predict inputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    predict_pb2,
    prediction_log_pb2,
    regression_pb2,
)

from tfx_serving_ext.protocol.signatures import METHOD_KINDS, summarize_tensor

logger = logging.getLogger(__name__)

Request = (
    predict_pb2.PredictRequest
    | classification_pb2.ClassificationRequest
    | regression_pb2.RegressionRequest
)
ExampleLike = bytes | example_pb2.Example

_FLOAT_DTYPES = {"DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"}
_INT_DTYPES = {"DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_UINT8", "DT_UINT16"}
_INT_DTYPES |= {"DT_UINT32", "DT_UINT64"}


class CannotBuildRequest(ValueError):
    """The examples cannot fill this signature's inputs (the signature is skipped, not guessed)."""


@dataclass(frozen=True)
class RequestForSignature:
    """A request for one signature, of the kind TF Serving expects for its method."""

    signature_name: str
    kind: str  # "predict" | "classify" | "regress"
    request: Request

    def to_prediction_log(self) -> prediction_log_pb2.PredictionLog:
        """Returns the request wrapped in a PredictionLog (the warmup file's record type)."""
        return to_prediction_log(self)


def to_prediction_log(item: RequestForSignature) -> prediction_log_pb2.PredictionLog:
    """Returns `item` as a PredictionLog with `predict_log`, `classify_log` or `regress_log` set."""
    log = prediction_log_pb2.PredictionLog()
    getattr(log, f"{item.kind}_log").request.CopyFrom(item.request)
    return log


def from_prediction_log(log: prediction_log_pb2.PredictionLog) -> RequestForSignature:
    """Returns the request held by a PredictionLog.

    Raises:
        CannotBuildRequest: the log holds no predict, classify or regress request.
    """
    which = log.WhichOneof("log_type")
    if which not in ("predict_log", "classify_log", "regress_log"):
        raise CannotBuildRequest(f"PredictionLog of type {which!r} holds no single request")
    request = getattr(log, which).request
    return RequestForSignature(request.model_spec.signature_name, which[: -len("_log")], request)


def _parse(example: ExampleLike) -> example_pb2.Example:
    if isinstance(example, example_pb2.Example):
        return example
    return example_pb2.Example.FromString(example)


def _serialize(example: ExampleLike) -> bytes:
    return example if isinstance(example, bytes) else example.SerializeToString()


def request_kind(signature_def: meta_graph_pb2.SignatureDef) -> str:
    """Returns "predict", "classify" or "regress" for a signature's method name.

    Raises:
        CannotBuildRequest: the method name is none of TF Serving's.
    """
    kind = METHOD_KINDS.get(signature_def.method_name)
    if kind is None:
        raise CannotBuildRequest(f"method name {signature_def.method_name!r} is not servable")
    return kind


def serialized_input_key(
    signature_def: meta_graph_pb2.SignatureDef, feature_names: Iterable[str] = ()
) -> str | None:
    """Returns the input that takes serialized tf.Examples, or None for a typed signature.

    That is a single DT_STRING input of rank 1 (or unknown rank) whose name is not one of the
    examples' features (a feature of that name means the signature wants the feature's values).
    """
    if len(signature_def.inputs) != 1:
        return None
    key, info = next(iter(signature_def.inputs.items()))
    tensor = summarize_tensor(info)
    rank_ok = tensor.shape is None or len(tensor.shape) == 1
    if tensor.dtype == "DT_STRING" and rank_ok and tensor.encoding == "dense":
        return None if key in set(feature_names) else key
    return None


def _feature_values(example: example_pb2.Example, key: str, dtype: str) -> list:
    feature = example.features.feature.get(key)
    if feature is None:
        raise CannotBuildRequest(f"the examples have no feature '{key}'")
    kind = feature.WhichOneof("kind")
    if dtype == "DT_STRING":
        if kind != "bytes_list":
            raise CannotBuildRequest(f"input '{key}' is DT_STRING but the feature is a {kind}")
        return list(feature.bytes_list.value)
    if dtype in _FLOAT_DTYPES:
        if kind == "float_list":
            return list(feature.float_list.value)
        if kind == "int64_list":
            return [float(v) for v in feature.int64_list.value]
    elif dtype in _INT_DTYPES and kind == "int64_list":
        return list(feature.int64_list.value)
    raise CannotBuildRequest(f"input '{key}' is {dtype}; a {kind} feature cannot fill it")


def _typed_tensor(key: str, info, batch: Sequence[example_pb2.Example]):
    import tensorflow as tf

    tensor = summarize_tensor(info)
    if tensor.encoding != "dense":
        raise CannotBuildRequest(f"input '{key}' is a {tensor.encoding} tensor")
    if tensor.shape is None or len(tensor.shape) == 0:
        raise CannotBuildRequest(f"input '{key}' has no batch dimension (shape {tensor.shape})")
    inner = tensor.shape[1:]
    rows = [_feature_values(example, key, tensor.dtype) for example in batch]
    lengths = {len(row) for row in rows}
    if 0 in lengths:
        raise CannotBuildRequest(f"feature '{key}' is empty in some examples")
    if -1 not in inner:
        needed = math.prod(inner)
        if lengths != {needed}:
            raise CannotBuildRequest(
                f"input '{key}' has shape {list(tensor.shape)}, needs {needed} value(s) per "
                f"example; the feature has {sorted(lengths)}"
            )
    elif len(lengths) > 1 or inner.count(-1) > 1 or len(inner) != 1:
        raise CannotBuildRequest(
            f"input '{key}' has shape {list(tensor.shape)}; the examples' value counts "
            f"{sorted(lengths)} do not fill it without padding"
        )
    dtype = tf.dtypes.as_dtype(info.dtype)
    if tensor.dtype == "DT_STRING":
        array = np.array(rows, dtype=object)
    else:
        array = np.array(rows, dtype=dtype.as_numpy_dtype)
    shape = [len(batch)] + [len(rows[0]) if d == -1 else d for d in inner]
    return tf.make_tensor_proto(array.reshape(shape), dtype=dtype)


def build_signature_requests(
    signature_name: str,
    signature_def: meta_graph_pb2.SignatureDef,
    examples: Sequence[ExampleLike],
    model_name: str,
    *,
    batch_size: int = 1,
) -> list[RequestForSignature]:
    """Returns the requests for one signature, `batch_size` examples per request.

    Raises:
        CannotBuildRequest: the method is not servable, or the examples cannot fill the inputs.
    """
    kind = request_kind(signature_def)
    parsed = [_parse(e) for e in examples]
    feature_names = set().union(*(e.features.feature.keys() for e in parsed)) if parsed else set()
    serialized_key = serialized_input_key(signature_def, feature_names)
    requests = []
    for start in range(0, len(parsed), batch_size):
        batch = parsed[start : start + batch_size]
        if kind == "predict":
            request = predict_pb2.PredictRequest()
            if serialized_key is not None:
                import tensorflow as tf

                serialized = [_serialize(e) for e in examples[start : start + batch_size]]
                request.inputs[serialized_key].CopyFrom(
                    tf.make_tensor_proto(serialized, dtype=tf.string, shape=[len(serialized)])
                )
            else:
                for key, info in signature_def.inputs.items():
                    request.inputs[key].CopyFrom(_typed_tensor(key, info, batch))
        else:
            request = (
                classification_pb2.ClassificationRequest()
                if kind == "classify"
                else regression_pb2.RegressionRequest()
            )
            request.input.example_list.examples.extend(batch)
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        requests.append(RequestForSignature(signature_name, kind, request))
    return requests


def build_requests(
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
    examples: Sequence[ExampleLike],
    model_name: str,
    signature_names: Sequence[str] | None = None,
    *,
    batch_size: int = 1,
    skipped: dict[str, str] | None = None,
) -> list[RequestForSignature]:
    """Returns requests for every chosen signature (default: all), grouped by signature.

    Signatures the examples cannot fill are left out, logged, and recorded in `skipped`
    (signature name -> reason) when a dict is given.

    Args:
        signature_defs: the model's SignatureDefs (`saved_model.read_signature_defs`).
        examples: serialized tf.Examples or Example protos.
        model_name: the name clients address the model by (`model_spec.name`).
        signature_names: the signatures to build for; None means every signature.
        batch_size: examples per request.
        skipped: filled with the reason each left-out signature was skipped.

    Raises:
        KeyError: a named signature does not exist.
    """
    names = list(signature_names) if signature_names else sorted(signature_defs)
    missing = [n for n in names if n not in signature_defs]
    if missing:
        raise KeyError(f"no signature {missing} in the model; it has {sorted(signature_defs)}")
    requests = []
    for name in names:
        try:
            requests.extend(
                build_signature_requests(
                    name, signature_defs[name], examples, model_name, batch_size=batch_size
                )
            )
        except CannotBuildRequest as exc:
            logger.warning("Skipping signature '%s': %s", name, exc)
            if skipped is not None:
                skipped[name] = str(exc)
    return requests
