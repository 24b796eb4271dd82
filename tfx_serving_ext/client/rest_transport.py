"""TF Serving's REST API from the client's side: routes, JSON bodies and one HTTP transport.

The JSON shapes follow TF Serving's util/json_tensor.cc: tensors as nested lists, binary strings
as {"b64": ...}, tf.Examples as {feature: [values]}, errors as {"error": message}.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from urllib.parse import urlsplit

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import input_pb2

from tfx_serving_ext.protocol.errors import ServerUnreachable, ServingError, ServingTimeout
from tfx_serving_ext.protocol.tensors import numpy_dtype, tensor_proto_to_ndarray

CODE_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def model_path(model_name: str, version: int | None, label: str | None) -> str:
    path = f"/v1/models/{model_name}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{label}"
    return path


def tensor_to_json(proto):
    array = tensor_proto_to_ndarray(proto)
    if array.dtype == object:
        flat = [{"b64": base64.b64encode(v).decode("ascii")} for v in array.ravel().tolist()]
        return np.array(flat + [None], dtype=object)[:-1].reshape(array.shape).tolist()
    return array.tolist()


def json_to_array(value, dtype: int | None) -> np.ndarray:
    if dtype == types_pb2.DT_STRING:

        def leaf(v):
            if isinstance(v, list):
                return [leaf(x) for x in v]
            if isinstance(v, dict) and "b64" in v:
                return base64.b64decode(v["b64"])
            return str(v).encode("utf-8")

        converted = leaf(value)
        array = np.empty(np.shape(value) if isinstance(value, list) else (), dtype=object)
        if array.ndim == 0:
            array[()] = converted
        else:
            flat = np.array(converted, dtype=object).ravel().tolist()
            array.ravel()[:] = flat
        return array
    if dtype is None:
        return np.asarray(value)
    return np.asarray(value, dtype=numpy_dtype(dtype))


def feature_to_json(feature):
    kind = feature.WhichOneof("kind")
    if kind == "float_list":
        return [float(v) for v in feature.float_list.value]
    if kind == "int64_list":
        return list(feature.int64_list.value)
    if kind == "bytes_list":
        values = []
        for v in feature.bytes_list.value:
            try:
                values.append(v.decode("utf-8"))
            except UnicodeDecodeError:
                values.append({"b64": base64.b64encode(v).decode("ascii")})
        return values
    return []


def example_to_json(example) -> dict:
    return {name: feature_to_json(f) for name, f in example.features.feature.items()}


def input_to_json(model_input: input_pb2.Input) -> dict:
    kind = model_input.WhichOneof("kind")
    if kind == "example_list_with_context":
        with_context = model_input.example_list_with_context
        return {
            "context": example_to_json(with_context.context),
            "examples": [example_to_json(e) for e in with_context.examples],
        }
    return {"examples": [example_to_json(e) for e in model_input.example_list.examples]}


class RestTransport:
    """Keep-alive HTTP/1.1 connections to a REST endpoint, one per calling thread."""

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
            message = decoded.get("error", "") if isinstance(decoded, dict) else str(decoded)
            code = CODE_BY_HTTP.get(
                response.status, "INTERNAL" if response.status >= 500 else "UNKNOWN"
            )
            raise ServingError(code, message or f"HTTP {response.status} for {method} {path}")
        return decoded

    def close(self) -> None:
        self._drop()
