"""Converts TensorProtos to numpy arrays and back without going through TensorFlow ops."""

from __future__ import annotations

import functools
import math

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

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


def tensor_proto_to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Returns the value of `proto` as a numpy array (bytes objects for DT_STRING).

    Raises:
        ServingError: INVALID_ARGUMENT when the proto's values do not fill its shape.
    """
    if proto.tensor_shape.unknown_rank:
        raise invalid_argument("tensor shape has unknown rank")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(d < 0 for d in shape):
        raise invalid_argument(f"tensor shape {list(shape)} has a negative dimension")
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
        if size * dtype.itemsize > MAX_EXPANDED_TENSOR_BYTES:
            raise invalid_argument(
                f"tensor of shape {list(shape)} would expand {array.size} value(s) to "
                f"{size * dtype.itemsize} bytes; at most {MAX_EXPANDED_TENSOR_BYTES} bytes may "
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
