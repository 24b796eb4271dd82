"""A loaded model version: its SignatureDefs and the concrete functions that run them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import ServingError, from_exception, invalid_argument
from tfx_serving_ext.protocol.saved_model import SERVE_TAG, is_saved_model_dir, read_meta_graph

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_OUTPUTS = "outputs"


class Servable:
    """One loaded version of a model, answering Predict / Classify / Regress / MultiInference.

    Thread-safe: requests run concurrently on the same concrete functions. A request holds a
    reference to the Servable it started on, so unloading a version never cuts it short.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        signature_defs: dict[str, meta_graph_pb2.SignatureDef],
        functions: dict,
        loaded: object,
    ):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = signature_defs
        self._functions = functions
        self._loaded = loaded  # keeps variables and resources alive

    @classmethod
    def load(cls, name: str, version: int, path: str | os.PathLike) -> Servable:
        """Returns the SavedModel at `path` loaded with the 'serve' tag.

        Raises:
            ServingError: the directory is missing, incomplete or not a loadable SavedModel.
        """
        import tensorflow as tf

        path = Path(path)
        if not is_saved_model_dir(path):
            raise ServingError(
                "NOT_FOUND",
                "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                f"{path}",
            )
        try:
            meta_graph = read_meta_graph(path, (SERVE_TAG,))
            loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
        except Exception as exc:
            status = from_exception(exc)
            code = status.code if isinstance(exc, tf.errors.OpError) else "INTERNAL"
            raise ServingError(
                code, f"Failed to load SavedModel from {path}: {status.message}"
            ) from exc
        signature_defs = dict(meta_graph.signature_def)
        functions = dict(loaded.signatures)
        return cls(name, version, path, signature_defs, functions, loaded)

    # ---- Predict -------------------------------------------------------------------------

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Returns the PredictResponse for `request`, run on this version."""
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(name)
        function = self._functions.get(name)
        if signature is None or function is None:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(
                "INTERNAL",
                "Expected prediction signature method_name to be one of "
                f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. "
                f"Was: {signature.method_name}",
            )
        _check_input_names(signature, request)
        arguments = {}
        for index, (alias, proto) in enumerate(sorted(request.inputs.items())):
            expected = signature.inputs[alias].dtype
            if proto.dtype != expected:
                raise invalid_argument(
                    f"Expects arg[{index}] to be {tensors.dtype_name(expected)} but "
                    f"{tensors.dtype_name(proto.dtype)} is provided"
                )
            arguments[alias] = tensors.tensor_proto_to_ndarray(proto)
        aliases = _output_aliases(signature, request.output_filter)
        outputs = self._call(function, arguments)
        response = predict_pb2.PredictResponse()
        self._fill_model_spec(response.model_spec, name)
        for alias in aliases:
            tensors.ndarray_to_tensor_proto(outputs[alias], response.outputs[alias])
        return response

    def run_predict_arrays(
        self, signature_name: str, arguments: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Returns the outputs of a predict-style call on numpy inputs (the REST path)."""
        function = self._functions.get(signature_name)
        signature = self.signature_defs.get(signature_name)
        if function is None or signature is None:
            raise ServingError(
                "FAILED_PRECONDITION", f'Serving signature key "{signature_name}" not found.'
            )
        return self._call(function, arguments)

    def _call(self, function, arguments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            results = function(**{k: tf.convert_to_tensor(v) for k, v in arguments.items()})
            return {k: v.numpy() for k, v in results.items()}
        except Exception as exc:  # TF op errors and argument binding errors
            raise from_exception(exc) from exc

    def _fill_model_spec(self, spec, signature_name: str) -> None:
        spec.name = self.name
        spec.signature_name = signature_name
        spec.version.value = self.version

    # ---- Classify / Regress ----------------------------------------------------------------

    def classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Returns the ClassificationResponse for the tf.Examples in `request`."""
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self._signature_of_method(name, CLASSIFY_METHOD, "classification")
        _check_classify_signature(signature)
        serialized = serialized_examples(request.input)
        outputs = self._call(self._functions[name], {CLASSIFY_INPUTS: serialized})
        response = classification_pb2.ClassificationResponse()
        self._fill_model_spec(response.model_spec, request.model_spec.signature_name)
        _fill_classifications(outputs, len(serialized), response.result)
        return response

    def regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Returns the RegressionResponse for the tf.Examples in `request`."""
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self._signature_of_method(name, REGRESS_METHOD, "regression")
        _check_regress_signature(signature)
        serialized = serialized_examples(request.input)
        outputs = self._call(self._functions[name], {CLASSIFY_INPUTS: serialized})
        response = regression_pb2.RegressionResponse()
        self._fill_model_spec(response.model_spec, request.model_spec.signature_name)
        _fill_regressions(outputs, len(serialized), response.result)
        return response

    def _signature_of_method(
        self, name: str, method: str, kind: str
    ) -> meta_graph_pb2.SignatureDef:
        signature = self.signature_defs.get(name)
        if signature is None or name not in self._functions:
            raise invalid_argument(f"No signature was found with the name: {name}")
        if signature.method_name != method:
            raise invalid_argument(
                f"Expected {kind} signature method_name to be {method}. "
                f"Was: {signature.method_name}"
            )
        return signature

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Returns one Classify/Regress result per task, all run on the same examples."""
        seen: set[str] = set()
        input_tensor = None
        for task in request.tasks:
            if not task.model_spec.name:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            if task.model_spec.name != self.name:
                raise invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            signature = self.signature_defs.get(name)
            if signature is None or name not in self._functions:
                raise invalid_argument(f"Requested signature not found in model graph: {name}")
            if task.method_name == CLASSIFY_METHOD:
                _check_classify_signature(signature)
            elif task.method_name == REGRESS_METHOD:
                _check_regress_signature(signature)
            else:
                raise ServingError(
                    "UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}"
                )
            tensor_name = signature.inputs[CLASSIFY_INPUTS].name
            if input_tensor is not None and tensor_name != input_tensor:
                raise invalid_argument("Input tensor must be the same for all Signatures.")
            input_tensor = tensor_name
        serialized = serialized_examples(request.input)
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            outputs = self._call(self._functions[name], {CLASSIFY_INPUTS: serialized})
            result = response.results.add()
            if task.method_name == CLASSIFY_METHOD:
                _fill_classifications(outputs, len(serialized), result.classification_result)
            else:
                _fill_regressions(outputs, len(serialized), result.regression_result)
            self._fill_model_spec(result.model_spec, task.model_spec.signature_name)
        return response


def serialized_examples(model_input: input_pb2.Input) -> np.ndarray:
    """Returns the serialized tf.Examples of a Classify/Regress Input as a string array.

    With a context, each example is merged over the context (example features win), as
    TF Serving does.

    Raises:
        ServingError: INVALID_ARGUMENT when the input holds no examples.
    """
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in model_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = model_input.example_list_with_context
        context = with_context.context.SerializeToString()
        serialized = [context + e.SerializeToString() for e in with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise invalid_argument("Input is empty.")
    array = np.empty(len(serialized), dtype=object)
    array[:] = serialized
    return array


def _check_input_names(signature: meta_graph_pb2.SignatureDef, request) -> None:
    sent, expected = set(request.inputs), set(signature.inputs)
    if sent == expected or (sent < expected and len(signature.defaults) > 0):
        return
    raise invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
        f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
        f"Missing but required: {{{','.join(sorted(expected - sent))}}}."
    )


def _output_aliases(signature: meta_graph_pb2.SignatureDef, output_filter) -> list[str]:
    if not output_filter:
        return list(signature.outputs)
    seen: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.append(alias)
    return seen


def _check_classify_signature(signature: meta_graph_pb2.SignatureDef) -> None:
    if signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}"
        )
    if CLASSIFY_INPUTS not in signature.inputs:
        raise ServingError("FAILED_PRECONDITION", "No classification inputs found in SignatureDef.")
    if CLASSIFY_CLASSES not in signature.outputs and CLASSIFY_SCORES not in signature.outputs:
        raise ServingError(
            "FAILED_PRECONDITION",
            'Expected classification signature outputs to contain at least one of "classes" '
            'or "scores".',
        )


def _check_regress_signature(signature: meta_graph_pb2.SignatureDef) -> None:
    if signature.method_name != REGRESS_METHOD:
        raise invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise ServingError("FAILED_PRECONDITION", "No regression inputs found in SignatureDef.")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise ServingError("FAILED_PRECONDITION", "No regression outputs found in SignatureDef.")


def _fill_classifications(outputs: dict, num_examples: int, result) -> None:
    classes = outputs.get(CLASSIFY_CLASSES)
    scores = outputs.get(CLASSIFY_SCORES)
    for label, tensor in (("classes", classes), ("scores", scores)):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}"
            )
        if tensor.shape[0] != num_examples:
            raise invalid_argument(
                f"Expected {label} output batch size of {num_examples}. Got: {tensor.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    class_rows = classes.tolist() if classes is not None else None
    score_rows = scores.astype(np.float32).tolist() if scores is not None else None
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            item = classifications.classes.add()
            if class_rows is not None:
                item.label = class_rows[i][c].decode("utf-8", "replace")
            if score_rows is not None:
                item.score = score_rows[i][c]


def _fill_regressions(outputs: dict, num_examples: int, result) -> None:
    values = outputs[REGRESS_OUTPUTS]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
            f"got {list(values.shape)}"
        )
    if values.shape[0] != num_examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. "
            f"{values.shape[0]}"
        )
    for value in values.reshape(-1).astype(np.float32).tolist():
        result.regressions.add().value = value
