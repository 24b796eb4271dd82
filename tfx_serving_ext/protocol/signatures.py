"""Describes SavedModel signatures, the contract clients rely on, and what changed between two.

The SignatureDefs themselves are read by `serving.saved_model.read_signature_defs`; this module
turns them into plain descriptions (`SignatureSummary`), checks them against the rules TF
Serving applies and against an expected contract (`ServingContract`), and compares a candidate
with the baseline that serves now. Every finding is a `Check` with a precise message, so the
SignatureValidator component, the `inspect` command and tests all speak the same language.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tfx_serving_ext.config_fields import dataclass_from_mapping, parse_json_object

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
METHODS = {"predict": PREDICT_METHOD, "classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD}
METHOD_KINDS = {method: kind for kind, method in METHODS.items()}
# The input and output keys TF Serving looks up for classify / regress signatures
# (signature_constants; classifier.cc and regressor.cc refuse a signature without them).
EXAMPLE_INPUT = "inputs"
CLASSIFY_OUTPUTS = {"classes": "DT_STRING", "scores": "DT_FLOAT"}
REGRESS_OUTPUT = "outputs"
# The dtypes TF Serving's REST API converts from and to JSON (util/json_tensor.cc); anything
# else (complex, half, quantized, resource, variant) only works over gRPC.
REST_DTYPES = frozenset(
    {
        "DT_FLOAT",
        "DT_DOUBLE",
        "DT_INT8",
        "DT_INT16",
        "DT_INT32",
        "DT_INT64",
        "DT_UINT8",
        "DT_UINT32",
        "DT_UINT64",
        "DT_BOOL",
        "DT_STRING",
    }
)


class ContractError(ValueError):
    """A contract (JSON, dict or dataclass) cannot be understood."""


# ---------------------------------------------------------------------------------------------
# Descriptions of what the model declares.


@dataclass(frozen=True)
class TensorSummary:
    """One input or output of a signature: its dtype name and shape (None: unknown rank).

    Unknown dimensions are -1, as in the SignatureDef. `encoding` is "dense", "sparse" or
    "composite" (ragged and other composite tensors).
    """

    dtype: str
    shape: tuple[int, ...] | None
    encoding: str = "dense"

    def describe(self) -> str:
        """Returns e.g. `DT_FLOAT[-1,4]`."""
        shape = "?" if self.shape is None else ",".join(str(d) for d in self.shape)
        suffix = "" if self.encoding == "dense" else f" ({self.encoding})"
        return f"{self.dtype}[{shape}]{suffix}"


@dataclass(frozen=True)
class SignatureSummary:
    """One signature: its method name, inputs and outputs, and which inputs have defaults."""

    name: str
    method: str
    inputs: dict[str, TensorSummary]
    outputs: dict[str, TensorSummary]
    defaults: frozenset[str] = frozenset()

    @property
    def kind(self) -> str | None:
        """Returns "predict", "classify" or "regress", or None for an unknown method name."""
        return METHOD_KINDS.get(self.method)


def summarize_tensor(tensor_info: meta_graph_pb2.TensorInfo) -> TensorSummary:
    """Returns the dtype name, shape and encoding of a SignatureDef's TensorInfo."""
    encoding = tensor_info.WhichOneof("encoding")
    kind = {"coo_sparse": "sparse", "composite_tensor": "composite"}.get(encoding, "dense")
    dtype = types_pb2.DataType.Name(tensor_info.dtype)
    if tensor_info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(int(dim.size) for dim in tensor_info.tensor_shape.dim)
    return TensorSummary(dtype=dtype, shape=shape, encoding=kind)


def summarize_signatures(
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
) -> dict[str, SignatureSummary]:
    """Returns a SignatureSummary per signature name, sorted by name."""
    summaries = {}
    for name in sorted(signature_defs):
        sig = signature_defs[name]
        summaries[name] = SignatureSummary(
            name=name,
            method=sig.method_name,
            inputs={k: summarize_tensor(v) for k, v in sorted(sig.inputs.items())},
            outputs={k: summarize_tensor(v) for k, v in sorted(sig.outputs.items())},
            defaults=frozenset(sig.defaults.keys()),
        )
    return summaries


def format_signatures(summaries: Mapping[str, SignatureSummary]) -> str:
    """Returns a human-readable listing of signatures, one tensor per line."""
    lines = []
    for name, sig in summaries.items():
        lines.append(f"signature '{name}'  method {sig.method or '(none)'}")
        for title, tensors in (("inputs", sig.inputs), ("outputs", sig.outputs)):
            lines.append(f"  {title}:")
            for key, tensor in tensors.items():
                optional = "  (has default)" if key in sig.defaults else ""
                lines.append(f"    {key}: {tensor.describe()}{optional}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The contract: what clients expect. Partial contracts are allowed; only what is stated is checked.


def normalize_dtype(dtype: str | int) -> str:
    """Returns the `DT_*` name for a dtype given as `DT_FLOAT`, `float32`, `string` or an enum.

    Raises:
        ContractError: the name is not a TensorFlow dtype.
    """
    if isinstance(dtype, int):
        return types_pb2.DataType.Name(dtype)
    if dtype.upper() in types_pb2.DataType.DESCRIPTOR.values_by_name:
        return dtype.upper()
    from tensorflow import dtypes

    try:
        return types_pb2.DataType.Name(dtypes.as_dtype(dtype).as_datatype_enum)
    except TypeError as exc:
        raise ContractError(
            f"unknown dtype {dtype!r}: use a TensorFlow dtype such as 'float32' or 'DT_STRING'"
        ) from exc


def normalize_method(method: str) -> str:
    """Returns the full method name for `predict`/`classify`/`regress` or a full name.

    Raises:
        ContractError: the method is none of TF Serving's three.
    """
    full = METHODS.get(method, method)
    if full not in METHOD_KINDS:
        raise ContractError(
            f"unknown method {method!r}: use one of {sorted(METHODS)} (or {sorted(METHOD_KINDS)})"
        )
    return full


@dataclass
class TensorContract:
    """What clients expect of one input or output; None means "not checked"."""

    dtype: str | None = None
    shape: list[int | None] | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None:
            self.dtype = normalize_dtype(self.dtype)
        if self.shape is not None:
            self.shape = [-1 if d is None else int(d) for d in self.shape]


@dataclass
class SignatureContract:
    """What clients expect of one signature: its method and (some of) its inputs and outputs."""

    method: str | None = None
    inputs: dict[str, TensorContract] = field(default_factory=dict)
    outputs: dict[str, TensorContract] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method is not None:
            self.method = normalize_method(self.method)
        self.inputs = {k: _tensor_contract(v) for k, v in self.inputs.items()}
        self.outputs = {k: _tensor_contract(v) for k, v in self.outputs.items()}


@dataclass
class ServingContract:
    """The serving interface a model must offer, signature by signature.

    Example:
        ServingContract(signatures={
            "serving_default": SignatureContract(
                method="predict", inputs={"examples": TensorContract("string", [-1])}),
        })
    """

    signatures: dict[str, SignatureContract] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.signatures = {k: _signature_contract(v) for k, v in self.signatures.items()}

    def to_json(self) -> str:
        """Returns the contract as a JSON string (the component's execution parameter)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServingContract:
        """Returns the contract parsed from `to_json` output (or an equivalent JSON object).

        Raises:
            ContractError: the text is not JSON or not a contract.
        """
        return cls.from_value(parse_json_object(text, what="contract", error=ContractError))

    @classmethod
    def from_value(cls, value: ServingContract | Mapping[str, Any] | str | None) -> ServingContract:
        """Returns a contract from a ServingContract, a dict, a JSON string or None (empty).

        A dict may be `{"signatures": {name: ...}}` or directly `{name: ...}`.

        Raises:
            ContractError: the value has unknown keys or wrong types.
        """
        if isinstance(value, ServingContract):
            return value
        data = parse_json_object(value, what="contract", error=ContractError)
        signatures = data["signatures"] if set(data) == {"signatures"} else data
        return cls(signatures=dict(signatures))


def _tensor_contract(value: Any) -> TensorContract:
    return dataclass_from_mapping(
        TensorContract, value, what="tensor contract fields", error=ContractError
    )


def _signature_contract(value: Any) -> SignatureContract:
    return dataclass_from_mapping(
        SignatureContract, value, what="signature contract fields", error=ContractError
    )


# ---------------------------------------------------------------------------------------------
# Checks.


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether it passed, and a message a person can act on."""

    name: str
    passed: bool
    message: str
    signature: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Returns the check as a JSON-friendly dict."""
        return asdict(self)


@dataclass
class BreakingChangePolicy:
    """Switches for what counts as breaking. Every switch on (the default) is the strictest."""

    require_serving_default: bool = True
    require_dynamic_batch: bool = True
    require_rest_dtypes: bool = True
    removed_signature: bool = True
    removed_input: bool = True
    removed_output: bool = True
    added_required_input: bool = True
    dtype_change: bool = True
    shape_change: bool = True
    method_change: bool = True

    def to_json(self) -> str:
        """Returns the policy as a JSON string (the component's execution parameter)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_value(cls, value: BreakingChangePolicy | Mapping[str, bool] | str | None):
        """Returns a policy from a policy, a dict of switches, a JSON string or None (defaults).

        Raises:
            ContractError: a switch name is unknown.
        """
        return dataclass_from_mapping(
            cls, value, what="breaking-change switches", error=ContractError
        )


def shapes_compatible(expected: tuple[int, ...] | list[int] | None, actual) -> bool:
    """Returns True when every shape `actual` may take is allowed by `expected` (-1: any size)."""
    if expected is None:
        return True
    if actual is None:
        return False
    if len(expected) != len(actual):
        return False
    return all(e == -1 or e == a for e, a in zip(expected, actual, strict=True))
