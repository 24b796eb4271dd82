"""The one in-process model runner: a SavedModel answering TF Serving requests as TF Serving does.

The embedded server's servables, the warmup writer's replay and the validator's run all go
through `LocalModel`, so a request means the same thing everywhere: Predict feeds the request's
tensors to the signature; Classify and Regress feed the examples, serialized (a context first,
so that the example's own features win), to the signature's single input `inputs` and read
`classes`/`scores` or `outputs` (see `example_inference`). Refusals are `ServingError`s with TF
Serving's status codes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.checks.example_inference import (
    check_example_signature,
    fill_classifications,
    fill_regressions,
    serialized_examples,
)
from tfx_serving_ext.checks.model_loading import (
    first_error_line,
    load_error,
    load_signatures,
)
from tfx_serving_ext.checks.requests import RequestForSignature
from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import ServingError, from_exception, invalid_argument
from tfx_serving_ext.protocol.saved_model import SERVE_TAG, is_saved_model_dir, read_meta_graph
from tfx_serving_ext.protocol.signatures import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    EXAMPLE_INPUT,
    PREDICT_METHOD,
    REGRESS_METHOD,
)

logger = logging.getLogger(__name__)


class RequestFailed(ServingError):
    """The model refused or failed a request offline, as TF Serving would (`.code`, `.message`)."""


class LocalModel:
    """A SavedModel loaded in-process, answering Predict / Classify / Regress / MultiInference.

    Thread-safe: requests run concurrently on the same concrete functions.

    Args:
        saved_model_dir: the SavedModel directory (a version directory).
        tags: the meta graph's tag set.
        method_name_check: TF Serving's --enable_signature_method_name_check. On, Classify and
            Regress need a signature of that method and Predict one of the three serving
            methods. Off (TF Serving's default, which the embedded server and the offline checks
            follow), any signature whose inputs and outputs fit runs: TF2 exports mark every
            signature `tensorflow/serving/predict`.

    Raises:
        ServingError: NOT_FOUND for a directory without a SavedModel, the load's status code
            (INTERNAL otherwise) for one TensorFlow cannot load.

    Example:
        model = LocalModel(find_serving_model_dir(model.uri))
        outputs = model.run(build_requests(defs, examples, "m")[0])
    """

    def __init__(
        self,
        saved_model_dir: str | os.PathLike,
        tags: Iterable[str] = (SERVE_TAG,),
        *,
        method_name_check: bool = False,
    ):

        self.path = Path(saved_model_dir)
        self.method_name_check = method_name_check
        tags = list(tags)
        if not is_saved_model_dir(self.path):
            raise ServingError(
                "NOT_FOUND",
                "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                f"{self.path}",
            )
        try:
            meta_graph = read_meta_graph(self.path, tags)
        except Exception as exc:
            raise load_error(self.path, exc, from_exception(exc).message) from exc
        self.signature_defs: dict[str, meta_graph_pb2.SignatureDef] = dict(meta_graph.signature_def)
        # Keeps the loaded object (its variables) alive as long as the signatures are used.
        self._loaded, self.signatures, self.loader = load_signatures(
            self.path, tags, self.signature_defs
        )

    # ---- Predict -------------------------------------------------------------------------

    def predict(
        self, request: predict_pb2.PredictRequest, version: int | None = None
    ) -> predict_pb2.PredictResponse:
        """Returns the PredictResponse for `request`; `version` is echoed in its model_spec.

        Raises:
            ServingError: FAILED_PRECONDITION for an unknown signature, INVALID_ARGUMENT for
                inputs or an output filter that do not match it, the graph's own status.
        """
        name, outputs = self.predict_outputs(request)
        return _predict_response(request, name, outputs, version)

    async def predict_async(
        self, request: predict_pb2.PredictRequest, version: int | None = None
    ) -> predict_pb2.PredictResponse:
        """As `predict`, awaiting a signature that can `submit` (the server's batch queue).

        The checks, the decoding and the response run in the caller's thread (an event loop);
        only the batch runs elsewhere, so a request waiting for its batch holds no thread.
        A signature that cannot `submit` runs in the caller's thread.

        Raises:
            ServingError: as `predict`.
        """
        name, function, arguments, aliases = self._predict_call(request)
        outputs = await _call_async(function, arguments)
        return _predict_response(request, name, {a: outputs[a] for a in aliases}, version)

    def predict_outputs(self, request: predict_pb2.PredictRequest) -> tuple[str, dict]:
        """Returns (signature name, output alias -> eager tf.Tensor) for a PredictRequest.

        Raises:
            ServingError: as `predict`.
        """
        name, function, arguments, aliases = self._predict_call(request)
        outputs = _call(function, arguments)
        return name, {alias: outputs[alias] for alias in aliases}

    def _predict_call(self, request: predict_pb2.PredictRequest) -> tuple:
        """Returns (signature name, function, input arrays, output aliases) of a PredictRequest.

        Raises:
            ServingError: as `predict`, for everything checked before the model runs.
        """
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(name)
        function = self.signatures.get(name)
        if signature is None or function is None:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        servable_methods = (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD)
        if self.method_name_check and signature.method_name not in servable_methods:
            raise ServingError(
                "INTERNAL",
                "Expected prediction signature method_name to be one of "
                f"{{{', '.join(servable_methods)}}}. Was: {signature.method_name}",
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
        return name, function, arguments, _output_aliases(signature, request.output_filter)

    # ---- Classify / Regress / MultiInference ------------------------------------------------

    def classify(
        self, request: classification_pb2.ClassificationRequest, version: int | None = None
    ) -> classification_pb2.ClassificationResponse:
        """Returns the ClassificationResponse for the tf.Examples in `request`.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown or unfit signature, no examples or
                outputs TF Serving cannot read; the graph's own status.
        """
        response = classification_pb2.ClassificationResponse()
        self._run_examples(request, "classify", response.result)
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        _fill_model_spec(response.model_spec, request.model_spec.name, name, version)
        return response

    def regress(
        self, request: regression_pb2.RegressionRequest, version: int | None = None
    ) -> regression_pb2.RegressionResponse:
        """Returns the RegressionResponse for the tf.Examples in `request`.

        Raises:
            ServingError: as `classify`.
        """
        response = regression_pb2.RegressionResponse()
        self._run_examples(request, "regress", response.result)
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        _fill_model_spec(response.model_spec, request.model_spec.name, name, version)
        return response

    def _run_examples(self, request, kind: str, result) -> dict:
        """Returns the outputs TF Serving reads (eager tensors) after filling `result`."""
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(name)
        if signature is None or name not in self.signatures:
            raise invalid_argument(f"No signature was found with the name: {name}")
        check_example_signature(signature, kind, self.method_name_check)
        serialized = serialized_examples(request.input)
        outputs = _call(self.signatures[name], {EXAMPLE_INPUT: serialized})
        read = _read_outputs(outputs, kind)
        fill = fill_classifications if kind == "classify" else fill_regressions
        fill({k: v.numpy() for k, v in read.items()}, len(serialized), result)
        return read

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest, version: int | None = None
    ) -> inference_pb2.MultiInferenceResponse:
        """Returns one Classify/Regress result per task, all run on the same examples.

        Raises:
            ServingError: INVALID_ARGUMENT for tasks naming different models, a signature twice
                or an unknown one, or signatures with different inputs; UNIMPLEMENTED for a
                task that is neither Classify nor Regress; as `classify` otherwise.
        """
        if not request.tasks:
            raise invalid_argument("Expected at least one task")
        model_name = ""
        seen: set[str] = set()
        input_tensor = None
        for task in request.tasks:
            if not task.model_spec.name:
                raise invalid_argument("Found ModelSpec with an empty model name.")
            if model_name and task.model_spec.name != model_name:
                raise invalid_argument(
                    "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            model_name = task.model_spec.name
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if name in seen:
                raise invalid_argument(f"Duplicate evaluation of signature: {name}")
            seen.add(name)
            signature = self.signature_defs.get(name)
            if signature is None or name not in self.signatures:
                raise invalid_argument(f"Requested signature not found in model graph: {name}")
            if task.method_name == CLASSIFY_METHOD:
                check_example_signature(signature, "classify", self.method_name_check)
            elif task.method_name == REGRESS_METHOD:
                check_example_signature(signature, "regress", self.method_name_check)
            else:
                raise ServingError(
                    "UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}"
                )
            tensor_name = signature.inputs[EXAMPLE_INPUT].name
            if input_tensor is not None and tensor_name != input_tensor:
                raise invalid_argument("Input tensor must be the same for all Signatures.")
            input_tensor = tensor_name
        serialized = serialized_examples(request.input)
        response = inference_pb2.MultiInferenceResponse()
        for task in request.tasks:
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            kind = "classify" if task.method_name == CLASSIFY_METHOD else "regress"
            outputs = _call(self.signatures[name], {EXAMPLE_INPUT: serialized})
            arrays = {k: v.numpy() for k, v in _read_outputs(outputs, kind).items()}
            result = response.results.add()
            if kind == "classify":
                fill_classifications(arrays, len(serialized), result.classification_result)
            else:
                fill_regressions(arrays, len(serialized), result.regression_result)
            _fill_model_spec(result.model_spec, task.model_spec.name, name, version)
        return response

    # ---- offline use ------------------------------------------------------------------------

    def run(self, item: RequestForSignature) -> dict:
        """Returns the output tensors (name -> eager tf.Tensor) TF Serving reads for a request.

        The request gets exactly the server's checks; for Predict that is the filtered outputs,
        for Classify `classes`/`scores`, for Regress `outputs`.

        Raises:
            RequestFailed: TF Serving would refuse the request or the graph failed; says which
                signature and why.
        """
        try:
            if item.kind == "predict":
                return self.predict_outputs(item.request)[1]
            if item.kind == "classify":
                result = classification_pb2.ClassificationResult()
            elif item.kind == "regress":
                result = regression_pb2.RegressionResult()
            else:
                raise invalid_argument(f"Unsupported request kind: {item.kind}")
            return self._run_examples(item.request, item.kind, result)
        except ServingError as exc:
            raise RequestFailed(
                exc.code,
                f"{item.kind} request to signature '{item.signature_name}' failed: "
                f"{first_error_line(exc.message)}",
            ) from exc


def _call(function, arguments: dict[str, np.ndarray]) -> dict:
    """Returns the signature's outputs (eager tensors), or raises TF Serving's status.

    A function that `takes_arrays` (the server's batch queue) is given the arrays themselves.
    """
    import tensorflow as tf

    try:
        if getattr(function, "takes_arrays", False):
            return function(**arguments)
        return function(**{k: tf.convert_to_tensor(v) for k, v in arguments.items()})
    except Exception as exc:  # TF op errors and argument binding errors
        raise from_exception(exc) from exc


async def _call_async(function, arguments: dict[str, np.ndarray]) -> dict:
    """Returns `_call`'s outputs, awaiting a function that can `submit` without blocking."""
    submit = getattr(function, "submit", None)
    if submit is None:
        return _call(function, arguments)
    loop = asyncio.get_running_loop()
    settled: asyncio.Future = loop.create_future()
    inbox = _LoopInbox.of(loop)
    try:
        submit(arguments, on_done=lambda call: inbox.put(settled, call))
        return (await settled).result()
    except Exception as exc:
        raise from_exception(exc) from exc


class _LoopInbox:
    """Hands finished calls to an event loop: one wake-up for all the calls of a batch.

    A batch thread finishing 32 calls would otherwise wake the loop 32 times (each
    `call_soon_threadsafe` writes to the loop's self-pipe); here the first call of a burst
    schedules one drain and the rest join it.
    """

    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _by_loop_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = weakref.ref(loop)  # the inbox is the value of a dict weakly keyed by it
        self._lock = threading.Lock()
        self._items: list = []

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _LoopInbox:
        inbox = cls._by_loop.get(loop)
        if inbox is None:
            with cls._by_loop_lock:
                inbox = cls._by_loop.setdefault(loop, cls(loop))
        return inbox

    def put(self, future: asyncio.Future, call) -> None:
        """Called from any thread: `future` gets `call` on the loop."""
        with self._lock:
            self._items.append((future, call))
            first = len(self._items) == 1
        loop = self._loop()
        if first and loop is not None:
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for future, call in items:
            if not future.done():  # a cancelled request's batch still finishes
                future.set_result(call)


def _predict_response(
    request: predict_pb2.PredictRequest, name: str, outputs: dict, version: int | None
) -> predict_pb2.PredictResponse:
    response = predict_pb2.PredictResponse()
    _fill_model_spec(response.model_spec, request.model_spec.name, name, version)
    for alias, tensor in outputs.items():
        tensors.ndarray_to_tensor_proto(tensor.numpy(), response.outputs[alias])
    return response


def _read_outputs(outputs: dict, kind: str) -> dict:
    keys = ("classes", "scores") if kind == "classify" else ("outputs",)
    return {key: outputs[key] for key in keys if key in outputs}


def _fill_model_spec(spec, model_name: str, signature_name: str, version: int | None) -> None:
    """Echoes the request's model name, the signature that ran and the version that answered."""
    spec.name = model_name
    spec.signature_name = signature_name
    if version is not None:
        spec.version.value = version


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
