"""Runs TF Serving requests against a SavedModel loaded in this process.

This is how TF Serving itself treats a request during warmup: Predict feeds the request's
tensors to the signature; Classify and Regress feed the examples, serialized, to the
signature's single input and read `classes`/`scores` or `outputs`. The validator uses it to
check that a signature answers, and the warmup writer to replay its records before shipping.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from tensorflow.core.example import example_pb2

from tfx_serving_ext.checks.requests import RequestForSignature
from tfx_serving_ext.protocol.saved_model import SERVE_TAG
from tfx_serving_ext.protocol.signatures import EXAMPLE_INPUT

logger = logging.getLogger(__name__)


class RequestFailed(RuntimeError):
    """The model refused or failed a request, as TF Serving would."""


class LocalModel:
    """A SavedModel loaded in-process, answering TF Serving requests.

    Example:
        model = LocalModel(find_serving_model_dir(model.uri))
        outputs = model.run(build_requests(defs, examples, "m")[0])
    """

    def __init__(self, saved_model_dir: str | os.PathLike, tags: Iterable[str] = (SERVE_TAG,)):
        import tensorflow as tf

        self.path = str(saved_model_dir)
        self._loaded = tf.saved_model.load(self.path, tags=list(tags))
        self.signatures = self._loaded.signatures

    def run(self, item: RequestForSignature) -> dict:
        """Returns the output tensors (name -> eager tf.Tensor) the signature gives for a request.

        Raises:
            RequestFailed: no such signature, the inputs do not match it, or the graph failed.
        """
        import tensorflow as tf

        function = self.signatures.get(item.signature_name)
        if function is None:
            raise RequestFailed(
                f"no signature '{item.signature_name}' in {self.path}; "
                f"it has {sorted(self.signatures.keys())}"
            )
        try:
            if item.kind == "predict":
                feeds = {k: tf.constant(tf.make_ndarray(v)) for k, v in item.request.inputs.items()}
                expected = set(function.structured_input_signature[1])
                if set(feeds) != expected:
                    raise RequestFailed(
                        f"input set {sorted(feeds)} does not match signature "
                        f"'{item.signature_name}' inputs {sorted(expected)}"
                    )
                outputs = function(**feeds)
                wanted = list(item.request.output_filter)
                return {k: v for k, v in outputs.items() if not wanted or k in wanted}
            key = _example_input_key(item, function)
            serialized = [e.SerializeToString() for e in _examples(item.request.input)]
            outputs = function(**{key: tf.constant(serialized, dtype=tf.string)})
            return _example_outputs(item, outputs, len(serialized))
        except RequestFailed:
            raise
        except Exception as exc:  # TF raises InvalidArgumentError, TypeError, ValueError, ...
            raise RequestFailed(
                f"{item.kind} request to signature '{item.signature_name}' failed: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc


def _example_input_key(item: RequestForSignature, function) -> str:
    """Returns the signature's single input, which TF Serving requires to be named `inputs`."""
    keys = sorted(function.structured_input_signature[1])
    if keys != [EXAMPLE_INPUT]:
        raise RequestFailed(
            f"{item.kind} signature '{item.signature_name}' has inputs {keys}; TF Serving's "
            f"{item.kind.capitalize()} needs exactly one, named '{EXAMPLE_INPUT}', and refuses "
            "the request otherwise"
        )
    return EXAMPLE_INPUT


def _example_outputs(item: RequestForSignature, outputs, batch: int) -> dict:
    """Returns the outputs TF Serving reads, checked as classifier.cc / regressor.cc check them."""
    import tensorflow as tf

    where = f"{item.kind} signature '{item.signature_name}'"
    if item.kind == "classify":
        wanted = {"classes": tf.string, "scores": tf.float32}
        if len(outputs) > 2:
            raise RequestFailed(f"{where} has {len(outputs)} outputs; TF Serving allows 1 or 2")
    else:
        wanted = {"outputs": tf.float32}
        if len(outputs) != 1:
            raise RequestFailed(f"{where} has {len(outputs)} outputs; TF Serving allows 1")
    found = {k: v for k, v in outputs.items() if k in wanted}
    if not found:
        raise RequestFailed(f"{where} returned {sorted(outputs)}, none of {sorted(wanted)}")
    for key, tensor in found.items():
        shape = list(tensor.shape)
        if item.kind == "classify":
            shape_ok = len(shape) == 2
        else:
            shape_ok = len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)
        if tensor.dtype != wanted[key] or not shape_ok or (shape and shape[0] != batch):
            raise RequestFailed(
                f"{where} returned '{key}' as {tensor.dtype.name}{shape} for {batch} example(s); "
                f"TF Serving needs {wanted[key].name} "
                + ("[batch, classes]" if item.kind == "classify" else "[batch] or [batch, 1]")
            )
    return found


def _examples(model_input) -> list[example_pb2.Example]:
    which = model_input.WhichOneof("kind")
    if which == "example_list":
        return list(model_input.example_list.examples)
    if which == "example_list_with_context":
        merged = []
        context = model_input.example_list_with_context.context
        for example in model_input.example_list_with_context.examples:
            combined = example_pb2.Example()
            combined.CopyFrom(example)
            for name, feature in context.features.feature.items():
                combined.features.feature[name].CopyFrom(feature)
            merged.append(combined)
        return merged
    raise RequestFailed("the request's input holds no examples")


def _first_line(exc: Exception) -> str:
    """Returns the line of a TF error that says what went wrong, not where the graph was built."""
    text = str(getattr(exc, "message", None) or exc).strip()
    skip = ("Graph execution error", "Detected at node", "<stack traces")
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line[0].isspace() and not line.startswith(skip)
    ]
    return lines[0][:500] if lines else (text[:500] or repr(exc))
