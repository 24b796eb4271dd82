"""TF Serving's rules for Classify, Regress and MultiInference: tf.Examples in, results out.

Mirrors tensorflow_serving/servables/tensorflow/{classifier,regressor,multi_inference,util}.cc:
which signatures may answer (`check_example_signature`), how the
request's examples become the signature's single string input (`serialized_examples`), and how
the output tensors are checked and turned into results (`fill_classifications`,
`fill_regressions`). Every refusal is a `ServingError` whose message starts with TF Serving's
own text; what follows it says which output or signature was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import input_pb2

from tfx_serving_ext.protocol.errors import ServingError, invalid_argument
from tfx_serving_ext.protocol.signatures import (
    CLASSIFY_METHOD,
    EXAMPLE_INPUT,
    REGRESS_METHOD,
    REGRESS_OUTPUT,
)

CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"


def serialized_examples(model_input: input_pb2.Input) -> np.ndarray:
    """Returns the serialized tf.Examples of a Classify/Regress Input as a string array.

    With a context, each record is the serialized context followed by the serialized example,
    as TF Serving builds it: the parser merges the two and the example's features, parsed last,
    win over a context feature of the same name.

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


def _names(keys) -> str:
    return "{" + ", ".join(sorted(keys)) + "}"


@dataclass(frozen=True)
class _ExampleApi:
    """What TF Serving's PreProcessClassification / PreProcessRegression require of a signature."""

    method: str
    noun: str  # as TF Serving's messages say it: "classification", "regression"
    api: str  # the request's name: "Classify", "Regress"
    output_counts: tuple[int, ...]


_EXAMPLE_APIS = {
    "classify": _ExampleApi(CLASSIFY_METHOD, "classification", "Classify", (1, 2)),
    "regress": _ExampleApi(REGRESS_METHOD, "regression", "Regress", (1,)),
}


def check_example_signature(
    signature: meta_graph_pb2.SignatureDef, kind: str, method_name_check: bool = True
) -> None:
    """Checks that a signature can answer a "classify" or "regress" request, as TF Serving does.

    Args:
        signature: the SignatureDef the request names.
        kind: "classify" (PreProcessClassification) or "regress" (PreProcessRegression).
        method_name_check: TF Serving's --enable_signature_method_name_check: also require the
            method name `tensorflow/serving/classify` (or `.../regress`).

    Raises:
        ServingError: INVALID_ARGUMENT naming what the signature lacks.
    """
    api = _EXAMPLE_APIS[kind]
    if method_name_check and signature.method_name != api.method:
        raise invalid_argument(
            f"Expected {api.noun} signature method_name to be {api.method}. "
            f"Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument(
            f"Expected one input Tensor. (the signature has {_names(signature.inputs)})"
        )
    if len(signature.outputs) not in api.output_counts:
        if kind == "classify":
            raise invalid_argument(
                f"Expected one or two output Tensors, found {len(signature.outputs)}"
            )
        raise invalid_argument(
            f"Expected one output Tensor. (the signature has {len(signature.outputs)} outputs "
            f"{_names(signature.outputs)}; TF Serving's Regress allows 1)"
        )
    if EXAMPLE_INPUT not in signature.inputs:
        raise invalid_argument(
            f"No {api.noun} inputs found in SignatureDef: the signature has inputs "
            f"{sorted(signature.inputs)}; TF Serving's {api.api} needs exactly one, named "
            f"'{EXAMPLE_INPUT}'"
        )
    if kind == "classify":
        if CLASSIFY_CLASSES not in signature.outputs and CLASSIFY_SCORES not in signature.outputs:
            raise invalid_argument(
                'Expected classification signature outputs to contain at least one of "classes" '
                f'or "scores". The signature has {_names(signature.outputs)}'
            )
    elif REGRESS_OUTPUT not in signature.outputs:
        raise invalid_argument(
            f"No regression outputs found in SignatureDef: the signature has outputs "
            f"{sorted(signature.outputs)}; TF Serving's Regress reads '{REGRESS_OUTPUT}'"
        )


def _described(alias: str, tensor: np.ndarray, num_examples: int) -> str:
    return f"'{alias}' as {_dtype_name(tensor)}{list(tensor.shape)} for {num_examples} example(s)"


def _dtype_name(tensor: np.ndarray) -> str:
    return "string" if tensor.dtype == object else tensor.dtype.name


def fill_classifications(outputs: dict[str, np.ndarray], num_examples: int, result) -> None:
    """Fills a ClassificationResult from `classes` / `scores`, checked as classifier.cc does.

    Raises:
        ServingError: INVALID_ARGUMENT for an output of the wrong rank, dtype or batch size.
    """
    classes = outputs.get(CLASSIFY_CLASSES)
    scores = outputs.get(CLASSIFY_SCORES)
    for alias, tensor, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if tensor is None:
            continue
        where = f"({_described(alias, tensor, num_examples)}; TF Serving needs "
        where += f"{'string' if alias == 'classes' else 'float32'} [batch, classes])"
        if tensor.ndim != 2:
            raise invalid_argument(
                f"Expected Tensor shape: [batch_size num_classes] but got "
                f"{list(tensor.shape)} {where}"
            )
        wrong_dtype = tensor.dtype != object if alias == "classes" else tensor.dtype != np.float32
        if wrong_dtype:
            raise invalid_argument(
                f"Expected {alias} Tensor of {dtype}. Got: {_dtype_name(tensor)} {where}"
            )
        if tensor.shape[0] != num_examples:
            raise invalid_argument(
                f"Expected {alias} output batch size of {num_examples}. Got: "
                f"{tensor.shape[0]} {where}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). "
            f"Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    class_rows = classes.tolist() if classes is not None else None
    score_rows = scores.tolist() if scores is not None else None
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            item = classifications.classes.add()
            if class_rows is not None:
                item.label = class_rows[i][c].decode("utf-8", "replace")
            if score_rows is not None:
                item.score = score_rows[i][c]


def fill_regressions(outputs: dict[str, np.ndarray], num_examples: int, result) -> None:
    """Fills a RegressionResult from `outputs`, checked as regressor.cc does.

    Raises:
        ServingError: INVALID_ARGUMENT for an output of the wrong rank, dtype or batch size.
    """
    values = outputs.get(REGRESS_OUTPUT)
    if values is None:
        raise ServingError("FAILED_PRECONDITION", "No regression outputs found in SignatureDef")
    where = f"({_described(REGRESS_OUTPUT, values, num_examples)}; TF Serving needs float32 "
    where += "[batch] or [batch, 1])"
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
            f"got {list(values.shape)} {where}"
        )
    if values.shape[0] != num_examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. "
            f"{values.shape[0]} {where}"
        )
    if values.dtype != np.float32:
        raise invalid_argument(
            f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(values)} {where}"
        )
    for value in values.reshape(-1).tolist():
        result.regressions.add().value = value
