"""Converts TensorProtos to numpy arrays and back without going through TensorFlow ops."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tfx_serving_ext.protocol.errors import invalid_argument

_NUMPY_BY_DTYPE = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_UINT16: np.uint16,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
    types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_HALF: np.float16,
    types_pb2.DT_STRING: np.object_,
}
_DTYPE_BY_NUMPY = {np.dtype(v): k for k, v in _NUMPY_BY_DTYPE.items() if v is not np.object_}

# The repeated field TF Serving's AsProtoField fills for each dtype.
_VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_STRING: "string_val",
}


def dtype_name(dtype: int) -> str:
    """Returns the TensorFlow name of a DataType enum value, e.g. 'float' for DT_FLOAT."""
    return types_pb2.DataType.Name(dtype)[3:].lower() if dtype else "invalid"


def numpy_dtype(dtype: int) -> np.dtype:
    """Returns the numpy dtype for a DataType enum value.

    Raises:
        ServingError: INVALID_ARGUMENT for dtypes the server cannot carry.
    """
    try:
        return np.dtype(_NUMPY_BY_DTYPE[dtype])
    except KeyError:
        raise invalid_argument(
            f"tensor dtype {types_pb2.DataType.Name(dtype)} is not supported"
        ) from None


# Largest tensor a request may have expanded from a single (or no) value: 256 MiB.
MAX_EXPANDED_TENSOR_BYTES = 256 * 2**20

# Highest rank a tensor may have: tf.convert_to_tensor of a numpy object array crashes the
# process (SIGSEGV) above 32 dimensions, and numpy itself stops at 64.
MAX_RANK = 32

# What one string element costs beyond its bytes: a Python bytes object in the numpy array and
# a tf.tstring in the tensor.
STRING_ELEMENT_OVERHEAD = 64


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Bounds on the tensors of one request, checked before anything is allocated for them.

    Attributes:
        max_rank: highest rank of any input tensor (at most MAX_RANK).
        max_elements: most elements in all the request's input tensors together.
        max_bytes: most bytes the request's input tensors take once decoded, strings counted by
            their length plus STRING_ELEMENT_OVERHEAD each.
    """

    max_rank: int = MAX_RANK
    max_elements: int = 64 * 2**20
    max_bytes: int = 512 * 2**20


DEFAULT_LIMITS = RequestLimits()


def _shape_of(proto: tensor_pb2.TensorProto, max_rank: int) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument("tensor shape has unknown rank")
    rank = len(proto.tensor_shape.dim)
    if rank > max_rank:
        raise invalid_argument(f"tensor of rank {rank} exceeds the maximum rank {max_rank}")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise invalid_argument(f"tensor shape {list(shape)} has a negative dimension")
    return shape


def tensor_proto_bytes(proto: tensor_pb2.TensorProto, max_rank: int = MAX_RANK) -> tuple[int, int]:
    """Returns (elements, bytes) that `proto` takes once decoded, without decoding it.

    Strings count by their length plus STRING_ELEMENT_OVERHEAD; a value that fills the whole
    shape counts once per element, as it will be copied.

    Raises:
        ServingError: INVALID_ARGUMENT for an unknown rank, a rank above `max_rank`, a negative
            dimension or a dtype the server cannot carry.
    """
    elements = math.prod(_shape_of(proto, max_rank))
    if proto.dtype == types_pb2.DT_STRING:
        values = proto.string_val
        if len(values) == elements:
            content = sum(len(v) for v in values)
        else:
            content = elements * (len(values[0]) if len(values) == 1 else 0)
        return elements, content + elements * STRING_ELEMENT_OVERHEAD
    return elements, elements * numpy_dtype(proto.dtype).itemsize


def _value_count(proto: tensor_pb2.TensorProto) -> int:
    if proto.dtype == types_pb2.DT_STRING:
        return len(proto.string_val)
    if proto.tensor_content:
        return len(proto.tensor_content) // max(numpy_dtype(proto.dtype).itemsize, 1)
    if proto.dtype == types_pb2.DT_HALF:
        return len(proto.half_val)
    field = _VALUE_FIELD.get(proto.dtype)
    return len(getattr(proto, field)) if field else 0


def check_tensor_rank(
    name: str, rank: int, tensor_info: meta_graph_pb2.TensorInfo | None, max_rank: int = MAX_RANK
) -> None:
    """Raises INVALID_ARGUMENT when a tensor of `rank` cannot be input `name` of a signature.

    A signature shape without dimensions is taken as "any rank": TF 1.x-era exports wrote
    `shape {}` for unknown shapes, and TF Serving feeds them anything.

    Raises:
        ServingError: INVALID_ARGUMENT for a rank above `max_rank` or one the signature's
            shape cannot take.
    """
    if rank > max_rank:
        raise invalid_argument(
            f"input '{name}' has rank {rank}, more than the maximum rank {max_rank}"
        )
    if tensor_info is None or tensor_info.tensor_shape.unknown_rank:
        return
    expected = len(tensor_info.tensor_shape.dim)
    if expected and rank != expected:
        raise invalid_argument(
            f"input '{name}' has rank {rank}, the signature expects rank {expected} "
            f"(shape {[d.size for d in tensor_info.tensor_shape.dim]})"
        )


def check_request_tensors(
    inputs,
    signature: meta_graph_pb2.SignatureDef | None,
    limits: RequestLimits = DEFAULT_LIMITS,
) -> None:
    """Raises unless a request's input tensors fit the signature's ranks and `limits`.

    `inputs` maps input names to TensorProtos (a PredictRequest's `inputs`). Runs before any of
    them is decoded, so a few bytes on the wire cannot ask for gigabytes.

    Raises:
        ServingError: INVALID_ARGUMENT naming the first input over a bound.
    """
    elements = total = 0
    for name, proto in sorted(inputs.items()):
        info = signature.inputs.get(name) if signature is not None else None
        check_tensor_rank(name, len(proto.tensor_shape.dim), info, limits.max_rank)
        count, size = tensor_proto_bytes(proto, limits.max_rank)
        elements += count
        total += size
        if elements > limits.max_elements or total > limits.max_bytes:
            values = _value_count(proto)
            hint = (
                f" (its {values} value(s) would fill {count} elements: send the values themselves)"
                if values < count
                else ""
            )
            raise invalid_argument(
                f"input '{name}' brings the request to {elements} elements and {total} bytes "
                f"once decoded; at most {limits.max_elements} elements and {limits.max_bytes} "
                f"bytes are allowed{hint}"
            )


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Returns the value of `proto` as a numpy array (bytes objects for DT_STRING).

    Raises:
        ServingError: INVALID_ARGUMENT when the proto's values do not fill its shape.
    """
    shape = _shape_of(proto, MAX_RANK)
    size = math.prod(shape)
    dtype = numpy_dtype(proto.dtype)
    if proto.dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif proto.tensor_content:
        if len(proto.tensor_content) != size * dtype.itemsize:
            raise invalid_argument(
                f"tensor_content holds {len(proto.tensor_content)} bytes, shape {list(shape)} "
                f"of {dtype_name(proto.dtype)} needs {size * dtype.itemsize}"
            )
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    elif proto.dtype == types_pb2.DT_HALF:
        array = np.array(proto.half_val, dtype=np.uint16).view(np.float16)
    else:
        array = np.array(getattr(proto, _VALUE_FIELD[proto.dtype]), dtype=dtype)
    if array.size == size:
        return array.reshape(shape)
    if array.size <= 1 and size > 0:
        # TensorProto lets one value (or none: zeros) fill the whole shape, so a few bytes on the
        # wire can ask for any amount of memory; refuse what no real request needs.
        _, expanded = tensor_proto_bytes(proto)
        if expanded > MAX_EXPANDED_TENSOR_BYTES:
            raise invalid_argument(
                f"tensor of shape {list(shape)} would expand {array.size} value(s) to "
                f"{expanded} bytes; at most {MAX_EXPANDED_TENSOR_BYTES} bytes may "
                "be filled from fewer values: send the values themselves"
            )
        if array.size == 1:
            return np.full(shape, array[0], dtype=dtype)
        if proto.dtype != types_pb2.DT_STRING:
            return np.zeros(shape, dtype=dtype)
    raise invalid_argument(
        f"tensor proto holds {array.size} values, shape {list(shape)} needs {size}"
    )


@functools.lru_cache(maxsize=64)
def _shape_proto(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]
    )


def tensor_dtype(array: np.ndarray) -> int:
    """Returns the DataType a numpy array travels as (DT_STRING for bytes, str and objects).

    Raises:
        ServingError: INVALID_ARGUMENT for numpy dtypes no tensor carries (complex, datetime).
    """
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    dtype = _DTYPE_BY_NUMPY.get(array.dtype)
    if dtype is None:
        raise invalid_argument(f"cannot serialize output of numpy dtype {array.dtype}")
    return dtype


def string_value(value) -> bytes:
    """Returns one element of a string tensor as bytes (str as UTF-8, anything else via str)."""
    return value if isinstance(value, bytes) else str(value).encode()


def ndarray_to_tensor_proto(
    array: np.ndarray, out: tensor_pb2.TensorProto | None = None, packed: bool = False
) -> tensor_pb2.TensorProto:
    """Returns `array` as a TensorProto with typed value fields, as TF Serving answers.

    `packed=True` puts numbers in `tensor_content` instead: the same tensor to any reader, built
    without a Python object per value (for protos that stay in the process).
    """
    proto = tensor_pb2.TensorProto() if out is None else out
    array = np.asarray(array)
    dtype = tensor_dtype(array)
    proto.dtype = dtype
    if dtype == types_pb2.DT_STRING:
        proto.string_val.extend(string_value(v) for v in array.ravel().tolist())
    elif packed:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    elif dtype == types_pb2.DT_HALF:
        proto.half_val.extend(array.ravel().view(np.uint16).tolist())
    else:
        getattr(proto, _VALUE_FIELD[dtype]).extend(array.ravel().tolist())
    proto.tensor_shape.CopyFrom(_shape_proto(array.shape))
    return proto
