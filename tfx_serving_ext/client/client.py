"""ServingClient: the one client the package uses to talk to TF Serving (gRPC or REST).

Works against the embedded server and the real tensorflow_model_server alike: it relies only on
the behaviour in TF_SERVING_API.md. Both protocols take the same path through it: requests are
built once (requests.py), sent by a transport (grpc_transport.py or rest_transport.py, the latter
through the one REST codec in protocol/), and read into results (results.py).

Example:
    with ServingClient("127.0.0.1:8500") as client:
        version = client.wait_until_available("penguin", timeout=60)
        result = client.predict("penguin", {"x": [[1.0, 2.0]]})
        result.outputs["y"], result.version
"""

from __future__ import annotations

import time

from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)

from tfx_serving_ext.client.grpc_transport import GrpcTransport
from tfx_serving_ext.client.requests import (
    DEFAULT_SIGNATURE,
    examples_input,
    predict_inputs,
    set_spec,
)
from tfx_serving_ext.client.rest_transport import RestTransport
from tfx_serving_ext.client.results import (
    CODE_NAMES,
    ClassifyResult,
    PredictResult,
    RegressResult,
    VersionStatus,
    classify_result,
    regress_result,
    spec_version,
    version_statuses,
)
from tfx_serving_ext.protocol.errors import (
    ServerUnreachable,
    ServingError,
    ServingTimeout,
    VersionLoadFailed,
)
from tfx_serving_ext.protocol.tensors import tensor_proto_to_ndarray

__all__ = [
    "DEFAULT_SIGNATURE",
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

_INIT_OP = "__saved_model_init_op"


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
            self._transport = GrpcTransport(address, timeout)
        else:
            self._transport = RestTransport(address, timeout, self._cached_signature)

    def close(self) -> None:
        """Closes the channel or connections."""
        self._transport.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ---- raw protos -------------------------------------------------------------------------

    def raw_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Returns the GetModelStatusResponse for a prebuilt request."""
        return self._transport.model_status(request)

    def raw_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Returns the GetModelMetadataResponse for a prebuilt request."""
        return self._transport.metadata(request)

    def raw_predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Returns the PredictResponse for a prebuilt PredictRequest (sent as is over gRPC)."""
        return self._transport.predict(request)

    def raw_classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Returns the ClassificationResponse for a prebuilt ClassificationRequest."""
        return self._transport.classify(request)

    def raw_regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Returns the RegressionResponse for a prebuilt RegressionRequest."""
        return self._transport.regress(request)

    def raw_multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Returns the MultiInferenceResponse (gRPC only: TF Serving has no REST route)."""
        return self._transport.multi_inference(request)

    def reload_config(self, config, timeout: float | None = None) -> None:
        """Sends HandleReloadConfigRequest with a ModelServerConfig (gRPC only).

        Raises:
            ServingError: the server rejected the config or a new model failed to load.
        """
        request = model_management_pb2.ReloadConfigRequest(config=config)
        response = self._transport.reload_config(request, timeout)
        if response.status.error_code:
            raise ServingError(
                CODE_NAMES.get(response.status.error_code, "UNKNOWN"),
                response.status.error_message,
            )

    # ---- status and metadata ----------------------------------------------------------------

    def model_status(self, model_name: str, version: int | None = None) -> list[VersionStatus]:
        """Returns the state of each version of `model_name` (or just `version`), newest first.

        Raises:
            ServingError: NOT_FOUND when the server knows no version of the model.
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        set_spec(request.model_spec, model_name, None, version, None)
        return version_statuses(self.raw_model_status(request))

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

    def _signature_map(
        self, model_name: str, version: int | None, label: str | None
    ) -> get_model_metadata_pb2.SignatureDefMap:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        set_spec(request.model_spec, model_name, None, version, label)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        self.raw_metadata(request).metadata["signature_def"].Unpack(signature_map)
        return signature_map

    def signature_defs(
        self, model_name: str, version: int | None = None
    ) -> dict[str, meta_graph_pb2.SignatureDef]:
        """Returns the SignatureDefs the server reports for the model (GetModelMetadata)."""
        signature_map = self._signature_map(model_name, version, None)
        return {k: v for k, v in signature_map.signature_def.items() if k != _INIT_OP}

    def _cached_signature(
        self, model_name: str, signature_name: str, version: int | None, label: str | None
    ) -> meta_graph_pb2.SignatureDef:
        key = (model_name, signature_name, version, label)
        signature = self._signature_cache.get(key)
        if signature is None:
            try:
                signature_map = self._signature_map(model_name, version, label)
                signature = signature_map.signature_def.get(signature_name)
            except ServingError:
                signature = None
            signature = signature or meta_graph_pb2.SignatureDef()
            self._signature_cache[key] = signature
        return signature

    # ---- Predict, Classify, Regress -----------------------------------------------------------

    def _predict_inputs(
        self, key: tuple, inputs: dict, output_filter: list[str] | None
    ) -> PredictResult:
        model_name, signature_name, version, label = key
        arrays = predict_inputs(inputs, self._cached_signature(*key))
        spec = set_spec(model_pb2.ModelSpec(), model_name, signature_name, version, label)
        outputs, answered = self._transport.predict_arrays(spec, arrays, output_filter or ())
        return PredictResult(
            outputs=outputs,
            model_name=model_name,
            signature_name=answered.signature_name or signature_name or DEFAULT_SIGNATURE,
            version=spec_version(answered),
        )

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
            response = self.raw_predict(inputs)
            return PredictResult(
                outputs={k: tensor_proto_to_ndarray(v) for k, v in response.outputs.items()},
                model_name=inputs.model_spec.name,
                signature_name=response.model_spec.signature_name
                or inputs.model_spec.signature_name
                or DEFAULT_SIGNATURE,
                version=spec_version(response.model_spec),
            )
        key = (model_name, signature_name, version, label)
        cached = key in self._signature_cache
        try:
            return self._predict_inputs(key, inputs, output_filter)
        except ServingError as exc:
            if not cached or exc.code != "INVALID_ARGUMENT":
                raise
            stale = self._signature_cache.pop(key)
            if self._cached_signature(*key) == stale:
                raise
            return self._predict_inputs(key, inputs, output_filter)

    def _examples_request(self, request_type, examples, spec_args: tuple, context):
        if isinstance(examples, request_type):
            return examples
        request = request_type(input=examples_input(examples, context))
        set_spec(request.model_spec, *spec_args)
        return request

    def classify(
        self,
        model_name: str,
        examples,
        signature_name: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        context: example_pb2.Example | None = None,
    ) -> ClassifyResult:
        """Returns the (label, score) pairs per tf.Example (protos or serialized bytes), or
        for a prebuilt ClassificationRequest."""
        spec_args = (model_name, signature_name, version, label)
        request = self._examples_request(
            classification_pb2.ClassificationRequest, examples, spec_args, context
        )
        return classify_result(self.raw_classify(request))

    def regress(
        self,
        model_name: str,
        examples,
        signature_name: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        context: example_pb2.Example | None = None,
    ) -> RegressResult:
        """Returns the regression value per tf.Example (protos or serialized bytes), or for a
        prebuilt RegressionRequest."""
        spec_args = (model_name, signature_name, version, label)
        request = self._examples_request(
            regression_pb2.RegressionRequest, examples, spec_args, context
        )
        return regress_result(self.raw_regress(request))
