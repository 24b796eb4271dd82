"""ServingClient: the one client the package uses to talk to TF Serving (gRPC or REST).

Works against the embedded server and the real tensorflow_model_server alike: it relies only on
the behaviour in TF_SERVING_API.md.

Example:
    with ServingClient("127.0.0.1:8500") as client:
        version = client.wait_until_available("penguin", timeout=60)
        result = client.predict("penguin", {"x": [[1.0, 2.0]]})
        result.outputs["y"], result.version
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import json_format
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    input_pb2,
    model_management_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.client.rest_transport import (
    RestTransport,
    input_to_json,
    json_to_array,
    model_path,
    tensor_to_json,
)
from tfx_serving_ext.protocol.errors import (
    CODE_NUMBERS,
    ServerUnreachable,
    ServingError,
    ServingTimeout,
    VersionLoadFailed,
)
from tfx_serving_ext.protocol.tensors import (
    ndarray_to_tensor_proto,
    numpy_dtype,
    tensor_proto_to_ndarray,
)

__all__ = [
    "ClassifyResult",
    "PredictResult",
    "RegressResult",
    "ServerUnreachable",
    "ServingClient",
    "ServingError",
    "ServingTimeout",
    "VersionLoadFailed",
    "VersionStatus",
]

DEFAULT_SIGNATURE = "serving_default"
_INIT_OP = "__saved_model_init_op"
_CODE_NAMES = {number: name for name, number in CODE_NUMBERS.items()}
_STATE_NAMES = {
    0: "UNKNOWN",
    10: "START",
    20: "LOADING",
    30: "AVAILABLE",
    40: "UNLOADING",
    50: "END",
}


@dataclass(frozen=True)
class VersionStatus:
    """One version's entry in GetModelStatus: state is START/LOADING/AVAILABLE/UNLOADING/END."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass
class PredictResult:
    """Outputs of a Predict call as numpy arrays, and the version that answered.

    `version` is None over REST unless a version was requested (TF Serving's REST predict
    response does not say which version answered).
    """

    outputs: dict[str, np.ndarray]
    model_name: str
    signature_name: str
    version: int | None


@dataclass
class ClassifyResult:
    """Per example, the (label, score) pairs of a Classify call, and the answering version."""

    classes: list[list[tuple[str, float]]]
    version: int | None = None


@dataclass
class RegressResult:
    """Per example, the regression value of a Regress call, and the answering version."""

    values: list[float] = field(default_factory=list)
    version: int | None = None


def _set_spec(spec, model_name, signature_name, version, label) -> None:
    spec.name = model_name
    if signature_name is not None:
        spec.signature_name = signature_name
    if version is not None:
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label


def _spec_version(spec) -> int | None:
    return spec.version.value if spec.HasField("version") else None


def _cast_input(array: np.ndarray, dtype: int | None) -> np.ndarray:
    """Returns `array` in the signature's dtype when it converts; else as is (the server judges)."""
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


class ServingClient:
    """Talks to a TF Serving model server over gRPC (default) or REST.

    Args:
        address: "host:port" for gRPC; "http://host:port" for REST.
        protocol: "grpc" or "rest".
        timeout: seconds each call may take.
    """

    def __init__(self, address: str, protocol: str = "grpc", timeout: float = 30.0):
        if protocol not in ("grpc", "rest"):
            raise ValueError(f"protocol must be 'grpc' or 'rest', got {protocol!r}")
        self.address = address
        self.protocol = protocol
        self.timeout = timeout
        self._signature_cache: dict[tuple, meta_graph_pb2.SignatureDef] = {}
        if protocol == "grpc":
            import grpc
            from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

            self._grpc = grpc
            self._channel = grpc.insecure_channel(
                address,
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                ],
            )
            self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
            self._rest = None
        else:
            self._rest = RestTransport(address, timeout)
            self._channel = None

    # ---- plumbing ---------------------------------------------------------------------------

    def _call(self, method, request, timeout: float | None = None):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except self._grpc.RpcError as exc:
            code = exc.code().name if exc.code() is not None else "UNKNOWN"
            details = exc.details() or ""
            if code == "UNAVAILABLE":
                raise ServerUnreachable(
                    f"Cannot reach TF Serving gRPC API at {self.address}: {details}"
                ) from None
            if code == "DEADLINE_EXCEEDED":
                raise ServingTimeout(
                    f"No answer from {self.address} within {self.timeout} s: {details}"
                ) from None
            raise ServingError(code, details) from None

    def close(self) -> None:
        """Closes the channel or connections."""
        if self._channel is not None:
            self._channel.close()
        if self._rest is not None:
            self._rest.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- raw protos -------------------------------------------------------------------------

    def raw_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Returns the GetModelStatusResponse for a prebuilt request."""
        if self._rest is None:
            return self._call(self._models.GetModelStatus, request)
        spec = request.model_spec
        path = model_path(spec.name, _spec_version(spec), spec.version_label or None)
        body = self._rest.request("GET", path)
        return json_format.ParseDict(
            body, get_model_status_pb2.GetModelStatusResponse(), ignore_unknown_fields=True
        )

    def raw_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Returns the GetModelMetadataResponse for a prebuilt request."""
        if self._rest is None:
            return self._call(self._prediction.GetModelMetadata, request)
        spec = request.model_spec
        path = model_path(spec.name, _spec_version(spec), spec.version_label or None)
        body = self._rest.request("GET", path + "/metadata")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        json_format.ParseDict(body.get("model_spec", {}), response.model_spec)
        signature_map = json_format.ParseDict(
            body.get("metadata", {}).get("signature_def", {}),
            get_model_metadata_pb2.SignatureDefMap(),
            ignore_unknown_fields=True,
        )
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def raw_predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Returns the PredictResponse for a prebuilt PredictRequest (sent as is over gRPC)."""
        if self._rest is None:
            return self._call(self._prediction.Predict, request)
        spec = request.model_spec
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        version, label = _spec_version(spec), spec.version_label or None
        body = {
            "signature_name": signature_name,
            "inputs": {name: tensor_to_json(t) for name, t in request.inputs.items()},
        }
        path = model_path(spec.name, version, label) + ":predict"
        outputs = self._rest.request("POST", path, body)["outputs"]
        signature = self._cached_signature(spec.name, signature_name, version, label)
        aliases = list(request.output_filter) or sorted(signature.outputs)
        if not isinstance(outputs, dict) or (len(aliases) == 1 and aliases[0] not in outputs):
            outputs = {aliases[0]: outputs}
        response = predict_pb2.PredictResponse()
        _set_spec(response.model_spec, spec.name, signature_name, version, None)
        for alias, value in outputs.items():
            dtype = signature.outputs[alias].dtype if alias in signature.outputs else None
            ndarray_to_tensor_proto(json_to_array(value, dtype), response.outputs[alias])
        return response

    def raw_classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Returns the ClassificationResponse for a prebuilt ClassificationRequest."""
        if self._rest is None:
            return self._call(self._prediction.Classify, request)
        spec = request.model_spec
        version = _spec_version(spec)
        body = {"signature_name": spec.signature_name, **input_to_json(request.input)}
        path = model_path(spec.name, version, spec.version_label or None) + ":classify"
        results = self._rest.request("POST", path, body)["results"]
        response = classification_pb2.ClassificationResponse()
        _set_spec(response.model_spec, spec.name, spec.signature_name, version, None)
        for row in results:
            classifications = response.result.classifications.add()
            for label, score in row:
                classifications.classes.add(label=label, score=score)
        return response

    def raw_regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Returns the RegressionResponse for a prebuilt RegressionRequest."""
        if self._rest is None:
            return self._call(self._prediction.Regress, request)
        spec = request.model_spec
        version = _spec_version(spec)
        body = {"signature_name": spec.signature_name, **input_to_json(request.input)}
        path = model_path(spec.name, version, spec.version_label or None) + ":regress"
        results = self._rest.request("POST", path, body)["results"]
        response = regression_pb2.RegressionResponse()
        _set_spec(response.model_spec, spec.name, spec.signature_name, version, None)
        for value in results:
            response.result.regressions.add(value=value)
        return response

    def raw_multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Returns the MultiInferenceResponse (gRPC only: TF Serving has no REST route)."""
        if self._rest is not None:
            raise ServingError("UNIMPLEMENTED", "MultiInference is only served over gRPC")
        return self._call(self._prediction.MultiInference, request)

    def reload_config(self, config, timeout: float | None = None) -> None:
        """Sends HandleReloadConfigRequest with a ModelServerConfig (gRPC only).

        Raises:
            ServingError: the server rejected the config or a new model failed to load.
        """
        if self._rest is not None:
            raise ServingError("UNIMPLEMENTED", "Config reload is only served over gRPC")
        request = model_management_pb2.ReloadConfigRequest(config=config)
        response = self._call(self._models.HandleReloadConfigRequest, request, timeout)
        if response.status.error_code:
            raise ServingError(
                _CODE_NAMES.get(response.status.error_code, "UNKNOWN"),
                response.status.error_message,
            )

    # ---- convenience ------------------------------------------------------------------------

    def model_status(self, model_name: str, version: int | None = None) -> list[VersionStatus]:
        """Returns the state of each version of `model_name` (or just `version`), newest first.

        Raises:
            ServingError: NOT_FOUND when the server knows no version of the model.
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        _set_spec(request.model_spec, model_name, None, version, None)
        response = self.raw_model_status(request)
        statuses = [
            VersionStatus(
                version=int(s.version),
                state=_STATE_NAMES.get(s.state, "UNKNOWN"),
                error_code=_CODE_NAMES.get(s.status.error_code, "UNKNOWN"),
                error_message=s.status.error_message,
            )
            for s in response.model_version_status
        ]
        return sorted(statuses, key=lambda s: s.version, reverse=True)

    def wait_until_available(
        self,
        model_name: str,
        version: int | None = None,
        timeout: float = 60.0,
        poll_interval: float = 0.1,
    ) -> int:
        """Returns the version that became AVAILABLE (with version=None, the newest one).

        Raises:
            VersionLoadFailed: the version (or, with version=None, every version the server
                knows) ended in END; carries the server's error message.
            ServingTimeout: nothing became AVAILABLE within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                statuses = self.model_status(model_name, version)
            except (ServerUnreachable, ServingTimeout) as exc:
                last = str(exc)
                statuses = []
            except ServingError as exc:
                if exc.code != "NOT_FOUND":
                    raise
                last = exc.message
                statuses = []
            if statuses:
                last = ", ".join(f"{s.version}: {s.state}" for s in statuses)
                available = [s.version for s in statuses if s.state == "AVAILABLE"]
                if available:
                    return max(available)
                if all(s.state == "END" for s in statuses):
                    newest = statuses[0]
                    if newest.error_code != "OK":
                        raise VersionLoadFailed(
                            model_name, newest.version, newest.error_code, newest.error_message
                        )
                    if version is not None:
                        raise VersionLoadFailed(
                            model_name,
                            newest.version,
                            "NOT_FOUND",
                            "the version was unloaded (state END without error), e.g. because "
                            "a newer version replaced it under the version policy",
                        )
            if time.monotonic() >= deadline:
                what = f"version {version}" if version is not None else "any version"
                raise ServingTimeout(
                    f"{what} of model {model_name} did not become AVAILABLE within {timeout} s "
                    f"at {self.address} (last seen: {last})"
                )
            time.sleep(poll_interval)

    def signature_defs(
        self, model_name: str, version: int | None = None
    ) -> dict[str, meta_graph_pb2.SignatureDef]:
        """Returns the SignatureDefs the server reports for the model (GetModelMetadata)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _set_spec(request.model_spec, model_name, None, version, None)
        response = self.raw_metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {k: v for k, v in signature_map.signature_def.items() if k != _INIT_OP}

    def _cached_signature(
        self, model_name: str, signature_name: str, version: int | None, label: str | None
    ) -> meta_graph_pb2.SignatureDef:
        key = (model_name, signature_name, version, label)
        signature = self._signature_cache.get(key)
        if signature is None:
            request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            )
            _set_spec(request.model_spec, model_name, None, version, label)
            try:
                response = self.raw_metadata(request)
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                signature = signature_map.signature_def.get(signature_name)
            except ServingError:
                signature = None
            signature = signature or meta_graph_pb2.SignatureDef()
            self._signature_cache[key] = signature
        return signature

    def _predict_request(
        self, key: tuple, inputs: dict, output_filter: list[str] | None
    ) -> predict_pb2.PredictRequest:
        model_name, signature_name, version, label = key
        request = predict_pb2.PredictRequest()
        _set_spec(request.model_spec, model_name, signature_name, version, label)
        signature = self._cached_signature(model_name, signature_name, version, label)
        for name, value in inputs.items():
            spec = signature.inputs.get(name)
            array = _cast_input(np.asarray(value), spec.dtype if spec is not None else None)
            ndarray_to_tensor_proto(array, request.inputs[name])
        if output_filter:
            request.output_filter.extend(output_filter)
        return request

    def predict(
        self,
        model_name: str,
        inputs: dict | predict_pb2.PredictRequest,
        signature_name: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        output_filter: list[str] | None = None,
    ) -> PredictResult:
        """Returns the outputs of a Predict call.

        `inputs` maps input names to array-likes (cast to the signature's dtypes, read from the
        server's metadata once, and again when the server refuses a request as INVALID_ARGUMENT,
        e.g. after a swap to a version with other dtypes) or is a prebuilt PredictRequest (sent
        unchanged).
        """
        if isinstance(inputs, predict_pb2.PredictRequest):
            request = inputs
            response = self.raw_predict(request)
        else:
            key = (model_name, signature_name, version, label)
            cached = key in self._signature_cache
            request = self._predict_request(key, inputs, output_filter)
            try:
                response = self.raw_predict(request)
            except ServingError as exc:
                if not cached or exc.code != "INVALID_ARGUMENT":
                    raise
                stale = self._signature_cache.pop(key)
                if self._cached_signature(*key) == stale:
                    raise
                request = self._predict_request(key, inputs, output_filter)
                response = self.raw_predict(request)
        return PredictResult(
            outputs={k: tensor_proto_to_ndarray(v) for k, v in response.outputs.items()},
            model_name=request.model_spec.name,
            signature_name=response.model_spec.signature_name
            or request.model_spec.signature_name
            or DEFAULT_SIGNATURE,
            version=_spec_version(response.model_spec),
        )

    @staticmethod
    def _examples_input(examples, context) -> input_pb2.Input:
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

    def classify(
        self,
        model_name: str,
        examples,
        signature_name: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        context: example_pb2.Example | None = None,
    ) -> ClassifyResult:
        """Returns the (label, score) pairs per tf.Example (protos or serialized bytes)."""
        if isinstance(examples, classification_pb2.ClassificationRequest):
            request = examples
        else:
            request = classification_pb2.ClassificationRequest(
                input=self._examples_input(examples, context)
            )
            _set_spec(request.model_spec, model_name, signature_name, version, label)
        response = self.raw_classify(request)
        return ClassifyResult(
            classes=[
                [(c.label, c.score) for c in row.classes] for row in response.result.classifications
            ],
            version=_spec_version(response.model_spec),
        )

    def regress(
        self,
        model_name: str,
        examples,
        signature_name: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        context: example_pb2.Example | None = None,
    ) -> RegressResult:
        """Returns the regression value per tf.Example (protos or serialized bytes)."""
        if isinstance(examples, regression_pb2.RegressionRequest):
            request = examples
        else:
            request = regression_pb2.RegressionRequest(
                input=self._examples_input(examples, context)
            )
            _set_spec(request.model_spec, model_name, signature_name, version, label)
        response = self.raw_regress(request)
        return RegressResult(
            values=[r.value for r in response.result.regressions],
            version=_spec_version(response.model_spec),
        )
