"""TF Serving's REST JSON, the parts every route shares: tensor values, errors, status, metadata.

Tensors are nested lists, binary strings `{"b64": ...}` (util/json_tensor.cc). This module and
its siblings `rest_predict` (predict bodies) and `rest_examples` (classify/regress bodies) are the
one codec: the client encodes requests and decodes answers with them, the embedded server decodes
requests and encodes answers with them.
"""

from __future__ import annotations

import base64
import json
import reprlib
import time

import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import ServingError, invalid_argument

B64 = "b64"

# HTTP status -> gRPC code name, the inverse of errors.HTTP_STATUS_BY_CODE where it is one to one
# (400 and 409 stand for several codes: the most common one is taken).
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

# ---- bodies -----------------------------------------------------------------------------------


# Python-level number hooks: the C parser calls them per number, and each call lets other
# threads (the REST event loop, gRPC) take the GIL, which one long json.loads never gives up.
def _parse_float(text: str) -> float:
    return float(text)


def _parse_int(text: str) -> int:
    return int(text)


def parse_body(raw: bytes):
    """Returns the JSON value of a request body, sharing the GIL while it parses.

    Raises:
        ServingError: INVALID_ARGUMENT for a body that is not JSON or nests deeper than
            Python's parser goes (about 1000 levels).
    """
    try:
        return json.loads(raw, parse_float=_parse_float, parse_int=_parse_int)
    except RecursionError:
        raise invalid_argument("JSON Parse error: the body nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"JSON Parse error: {exc}") from None


_DUMP_CHUNK = 8192


def _dump_parts(value, parts: list[str]) -> None:
    if isinstance(value, dict) and len(value) <= _DUMP_CHUNK:
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            parts.append(("," if index else "") + json.dumps(str(key)) + ":")
            _dump_parts(item, parts)
        parts.append("}")
    elif isinstance(value, list) and len(value) > _DUMP_CHUNK:
        parts.append("[")
        for start in range(0, len(value), _DUMP_CHUNK):
            chunk = json.dumps(value[start : start + _DUMP_CHUNK])[1:-1]
            parts.append(("," if start else "") + chunk)
            time.sleep(0)  # lets other threads run between chunks
        parts.append("]")
    else:
        parts.append(json.dumps(value))


def dump_body(value) -> bytes:
    """Returns a response body as JSON bytes, encoding long lists in chunks that share the GIL."""
    parts: list[str] = []
    _dump_parts(value, parts)
    return "".join(parts).encode("utf-8")


# ---- tensor values ----------------------------------------------------------------------------


def is_b64(value) -> bool:
    """Returns whether a JSON value is a `{"b64": ...}` object (one binary string)."""
    return isinstance(value, dict) and B64 in value


def decode_string_leaf(value) -> bytes:
    """Returns the bytes of one JSON string element: text as UTF-8, `{"b64": ...}` decoded.

    Raises:
        ServingError: INVALID_ARGUMENT for anything else, or for b64 that does not decode.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {B64} and isinstance(value[B64], str):
        try:
            return base64.b64decode(value[B64], validate=True)
        except ValueError as exc:
            raise invalid_argument(f"Unable to base64 decode {value[B64]!r}: {exc}") from None
    raise invalid_argument(
        f"JSON Value: {short(value)} Type: {json_type(value)} is not of expected type: string"
    )


def encode_string_leaf(value: bytes, always_b64: bool = False):
    """Returns one string element as JSON: text when it is UTF-8 (unless `always_b64`), else b64."""
    if not always_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {B64: base64.b64encode(value).decode("ascii")}


def json_shape(value, max_rank: int = tensors.MAX_RANK) -> list[int]:
    """Returns the shape a JSON tensor claims: the lengths along its first elements.

    Looks at no more than `max_rank + 1` levels, so a deeply nested value costs nothing.

    Raises:
        ServingError: INVALID_ARGUMENT for a value nested deeper than `max_rank`.
    """
    shape: list[int] = []
    while isinstance(value, list):
        if len(shape) == max_rank:
            raise invalid_argument(f"JSON tensor has a rank above the maximum rank {max_rank}")
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _string_array(value) -> np.ndarray:
    shape = json_shape(value)
    flat: list = []

    def collect(v, depth: int) -> None:
        # Recursion depth is bounded by the rank json_shape accepted.
        if depth == len(shape):
            if isinstance(v, list):
                raise invalid_argument("Expected a list of lists of equal length (a tensor)")
            flat.append(decode_string_leaf(v))
            return
        if not isinstance(v, list) or len(v) != shape[depth]:
            raise invalid_argument("Expected a list of lists of equal length (a tensor)")
        for x in v:
            collect(x, depth + 1)

    collect(value, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


_CONVERT_CHUNK = 65536


def _asarray_sharing_gil(value) -> np.ndarray:
    # numpy converts a list without releasing the GIL: a long one goes in chunks, so the REST
    # event loop and gRPC keep answering meanwhile.
    if not isinstance(value, list) or len(value) <= _CONVERT_CHUNK:
        return np.asarray(value)
    chunks = []
    for start in range(0, len(value), _CONVERT_CHUNK):
        chunks.append(np.asarray(value[start : start + _CONVERT_CHUNK]))
        time.sleep(0)
    return np.concatenate(chunks)


def json_to_ndarray(value, dtype: int | None, name: str = "") -> np.ndarray:
    """Returns a JSON value (nested lists) as an array of `dtype` (bytes objects for DT_STRING).

    With `dtype=None` (the signature does not say) strings and b64 objects give a string array
    and numbers numpy's own choice.

    Raises:
        ServingError: INVALID_ARGUMENT for a value of the wrong type or a ragged list.
    """
    if dtype == types_pb2.DT_STRING:
        return _string_array(value)
    target = None if dtype is None else tensors.numpy_dtype(dtype)
    json_shape(value)
    try:
        array = _asarray_sharing_gil(value)
    except (ValueError, TypeError):
        raise invalid_argument(
            f"Input '{name}' is not a tensor: lists must be rectangular and hold numbers"
        ) from None
    if target is None:
        return _string_array(value) if array.dtype.kind in "OU" else array
    kind = array.dtype.kind
    ok = (
        kind in "iu"
        or (kind == "f" and target.kind in "fc")
        or (kind == "b" and target.kind == "b")
        or (array.size == 0 and kind == "f")
    )
    if not ok:
        leaf = array.ravel()[0] if array.size else value
        raise invalid_argument(
            f"JSON Value: {short(leaf)} Type: {json_type(leaf)} is not of expected type: "
            f"{tensors.dtype_name(dtype)}"
        )
    if kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise invalid_argument(f"Input '{name}' holds a value out of range for {target}")
    return array.astype(target, copy=False)


def ndarray_to_json(array: np.ndarray, always_b64: bool = False):
    """Returns an array as a JSON value: nested lists, strings as in `encode_string_leaf`.

    Raises:
        ServingError: INVALID_ARGUMENT for numpy dtypes no tensor carries.
    """
    array = np.asarray(array)
    if tensors.tensor_dtype(array) != types_pb2.DT_STRING:
        if array.ndim == 0 or len(array) <= _CONVERT_CHUNK:
            return array.tolist()
        rows: list = []
        for start in range(0, len(array), _CONVERT_CHUNK):
            rows.extend(array[start : start + _CONVERT_CHUNK].tolist())
            time.sleep(0)  # lets other threads run between chunks
        return rows

    def convert(v):
        if isinstance(v, list):
            return [convert(x) for x in v]
        return encode_string_leaf(tensors.string_value(v), always_b64)

    return convert(array.tolist())


def json_type(value) -> str:
    """Returns the JSON type name of a value as TF Serving's messages spell it."""
    if isinstance(value, np.generic):
        value = value.item()
    return {str: "String", bool: "Boolean", dict: "Object", list: "Array"}.get(
        type(value),
        "Number" if isinstance(value, (int, float, np.number)) else type(value).__name__,
    )


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 3, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60


def short(value) -> str:
    """Returns a value's repr cut to fit in an error message (cheap for huge or deep values)."""
    text = _SHORT_REPR.repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) < 80 else text[:77] + "..."


# ---- errors ---------------------------------------------------------------------------------


def error_to_json(error: ServingError) -> dict:
    """Returns the REST body of an error: {"error": message} (sent with error.http_status)."""
    return {"error": error.message}


def error_from_json(http_status: int, body, fallback: str) -> ServingError:
    """Returns the ServingError a non-200 REST answer stands for (`fallback`: empty message)."""
    message = body.get("error", "") if isinstance(body, dict) else str(body)
    code = CODE_BY_HTTP.get(http_status, "INTERNAL" if http_status >= 500 else "UNKNOWN")
    return ServingError(code, message or fallback)


# ---- status and metadata ----------------------------------------------------------------------


def message_to_json(message) -> dict:
    """Returns a proto as TF Serving prints it (field names as in the proto, defaults shown)."""
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


def status_to_json(response: get_model_status_pb2.GetModelStatusResponse) -> dict:
    """Returns the REST body of GetModelStatus: {"model_version_status": [...]}."""
    return message_to_json(response)


def status_from_json(body: dict) -> get_model_status_pb2.GetModelStatusResponse:
    """Returns the GetModelStatusResponse a REST status body holds."""
    return json_format.ParseDict(
        body, get_model_status_pb2.GetModelStatusResponse(), ignore_unknown_fields=True
    )


def metadata_to_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
    """Returns the REST body of GetModelMetadata: the SignatureDefMap under metadata."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    return {
        "model_spec": message_to_json(response.model_spec),
        "metadata": {"signature_def": message_to_json(signature_map)},
    }


def metadata_from_json(body: dict) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """Returns the GetModelMetadataResponse a REST metadata body holds."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    json_format.ParseDict(body.get("model_spec", {}), response.model_spec)
    signature_map = json_format.ParseDict(
        body.get("metadata", {}).get("signature_def", {}),
        get_model_metadata_pb2.SignatureDefMap(),
        ignore_unknown_fields=True,
    )
    response.metadata["signature_def"].Pack(signature_map)
    return response
