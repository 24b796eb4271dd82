"""TF Serving's REST API from the client's side: routes, keep-alive HTTP, and the one codec.

Bodies are encoded and decoded by `protocol.rest_json`/`rest_predict`/`rest_examples`, the codec
the embedded server uses too; this module only adds routes and the HTTP connection.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import numpy as np
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

from tfx_serving_ext.client.requests import DEFAULT_SIGNATURE, set_spec
from tfx_serving_ext.client.results import spec_version
from tfx_serving_ext.protocol import rest_examples, rest_json, rest_predict
from tfx_serving_ext.protocol.errors import ServerUnreachable, ServingError, ServingTimeout
from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto, tensor_proto_to_ndarray

# (model name, signature name, version, label) -> the server's SignatureDef (empty if unknown).
SignatureLookup = Callable[..., meta_graph_pb2.SignatureDef]


def model_path(model_name: str, version: int | None, label: str | None) -> str:
    """Returns the REST path of a model: /v1/models/<name>[/versions/<v>|/labels/<l>]."""
    path = f"/v1/models/{model_name}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{label}"
    return path


def _spec_path(spec: model_pb2.ModelSpec) -> str:
    return model_path(spec.name, spec_version(spec), spec.version_label or None)


class JsonHttp:
    """Keep-alive HTTP/1.1 connections to a REST endpoint, one per calling thread; JSON bodies."""

    def __init__(self, address: str, timeout: float):
        url = address if "://" in address else f"http://{address}"
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"REST address must look like http://host:port, got {address!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """Returns the decoded JSON answer to `method path` with `body`.

        Raises:
            ServingError: the server answered an error (code from the HTTP status).
            ServerUnreachable, ServingTimeout: no answer.
        """
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except TimeoutError as exc:
                self._drop()
                raise ServingTimeout(
                    f"No answer from http://{self.host}:{self.port}{path} within {self.timeout} s"
                ) from exc
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop()  # a kept-alive connection the server closed: retry once
                if attempt:
                    raise ServerUnreachable(
                        f"Connection to http://{self.host}:{self.port} lost: {exc}"
                    ) from exc
            except OSError as exc:
                self._drop()
                raise ServerUnreachable(
                    f"Cannot reach TF Serving REST API at http://{self.host}:{self.port}: {exc}"
                ) from exc
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"error": data.decode("utf-8", "replace")}
        if response.status != 200:
            raise rest_json.error_from_json(
                response.status, decoded, f"HTTP {response.status} for {method} {path}"
            )
        return decoded

    def close(self) -> None:
        """Closes this thread's connection."""
        self._drop()


class RestTransport:
    """Sends tensorflow.serving requests to a REST endpoint ("http://host:port").

    The methods mirror GrpcTransport's. A bare single predict output is named, and every output
    decoded in its dtype, from the SignatureDef `signatures` returns for the request.
    """

    def __init__(self, address: str, timeout: float, signatures: SignatureLookup):
        self._http = JsonHttp(address, timeout)
        self._signatures = signatures

    def model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Returns GetModelStatus's answer (GET /v1/models/<name>...)."""
        return rest_json.status_from_json(self._http.request("GET", _spec_path(request.model_spec)))

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Returns GetModelMetadata's answer (GET .../metadata)."""
        path = _spec_path(request.model_spec) + "/metadata"
        return rest_json.metadata_from_json(self._http.request("GET", path))

    def predict_arrays(
        self,
        spec: model_pb2.ModelSpec,
        inputs: Mapping[str, np.ndarray],
        output_filter: Iterable[str] = (),
    ) -> tuple[dict[str, np.ndarray], model_pb2.ModelSpec]:
        """Returns (output arrays, the answering ModelSpec) of a Predict on input arrays.

        The ModelSpec names the requested version (None when none was: REST does not say).
        """
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        version, label = spec_version(spec), spec.version_label or None
        body = rest_predict.predict_request_to_json(signature_name, inputs)
        answer = self._http.request("POST", _spec_path(spec) + ":predict", body)
        signature = self._signatures(spec.name, signature_name, version, label)
        outputs = rest_predict.predict_outputs_from_json(answer, signature, output_filter)
        answered = set_spec(model_pb2.ModelSpec(), spec.name, signature_name, version, None)
        return outputs, answered

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """Returns Predict's answer to a prebuilt PredictRequest."""
        inputs = {name: tensor_proto_to_ndarray(t) for name, t in request.inputs.items()}
        outputs, answered = self.predict_arrays(request.model_spec, inputs, request.output_filter)
        response = predict_pb2.PredictResponse(model_spec=answered)
        for alias, array in outputs.items():
            ndarray_to_tensor_proto(array, response.outputs[alias])
        return response

    def _examples(self, verb: str, request, response):
        spec = request.model_spec
        body = rest_examples.input_to_json(spec.signature_name, request.input)
        answer = self._http.request("POST", _spec_path(spec) + f":{verb}", body)
        set_spec(response.model_spec, spec.name, spec.signature_name, spec_version(spec), None)
        return answer

    def classify(
        self, request: classification_pb2.ClassificationRequest
    ) -> classification_pb2.ClassificationResponse:
        """Returns Classify's answer (POST ...:classify)."""
        response = classification_pb2.ClassificationResponse()
        answer = self._examples("classify", request, response)
        response.result.CopyFrom(rest_examples.classification_from_json(answer))
        return response

    def regress(
        self, request: regression_pb2.RegressionRequest
    ) -> regression_pb2.RegressionResponse:
        """Returns Regress's answer (POST ...:regress)."""
        response = regression_pb2.RegressionResponse()
        answer = self._examples("regress", request, response)
        response.result.CopyFrom(rest_examples.regression_from_json(answer))
        return response

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest
    ) -> inference_pb2.MultiInferenceResponse:
        """Raises UNIMPLEMENTED: TF Serving has no REST route for MultiInference."""
        raise ServingError("UNIMPLEMENTED", "MultiInference is only served over gRPC")

    def reload_config(
        self, request: model_management_pb2.ReloadConfigRequest, timeout: float | None = None
    ) -> model_management_pb2.ReloadConfigResponse:
        """Raises UNIMPLEMENTED: TF Serving has no REST route for config reloads."""
        raise ServingError("UNIMPLEMENTED", "Config reload is only served over gRPC")

    def close(self) -> None:
        """Closes this thread's connection."""
        self._http.close()
