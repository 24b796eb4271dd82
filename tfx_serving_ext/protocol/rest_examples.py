"""TF Serving's REST classify/regress bodies, both ways: tf.Examples in, results out.

A request is `{"signature_name": ..., "context": {...}, "examples": [{feature: value}]}`, the
JSON form of one `input_pb2.Input`: the client encodes its Input with `input_to_json`, the server
decodes it with `input_from_json` and runs it exactly as a gRPC Classify/Regress request.
"""

from __future__ import annotations

from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from tfx_serving_ext.protocol.errors import invalid_argument
from tfx_serving_ext.protocol.rest_json import decode_string_leaf, encode_string_leaf, short

# ---- examples -----------------------------------------------------------------------------


def feature_to_json(feature: feature_pb2.Feature) -> list:
    """Returns a Feature's values as a JSON list (bytes as text, or b64 when not UTF-8)."""
    kind = feature.WhichOneof("kind")
    if kind == "float_list":
        return [float(v) for v in feature.float_list.value]
    if kind == "int64_list":
        return list(feature.int64_list.value)
    if kind == "bytes_list":
        return [encode_string_leaf(v) for v in feature.bytes_list.value]
    return []


def feature_from_json(name: str, value) -> feature_pb2.Feature:
    """Returns the Feature a JSON value stands for: ints int64_list, numbers float_list,
    strings and b64 objects bytes_list (a bare value is a list of one).

    Raises:
        ServingError: INVALID_ARGUMENT for mixed or unsupported values.
    """
    values = value if isinstance(value, list) else [value]
    feature = feature_pb2.Feature()
    if not values:
        feature.float_list.SetInParent()
        return feature
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if any(not -(2**63) <= v < 2**63 for v in values):
            raise invalid_argument(f"Feature '{name}': {short(value)} is out of range for int64")
        feature.int64_list.value.extend(values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        try:
            feature.float_list.value.extend(float(v) for v in values)
        except OverflowError:
            raise invalid_argument(f"Feature '{name}': {short(value)} is out of range") from None
    elif all(isinstance(v, (str, dict)) for v in values):
        feature.bytes_list.value.extend(decode_string_leaf(v) for v in values)
    else:
        raise invalid_argument(
            f"Feature '{name}': values must all be numbers or all be strings/b64 objects, "
            f"got {short(value)}"
        )
    return feature


def example_to_json(example: example_pb2.Example) -> dict:
    """Returns a tf.Example as a JSON object of feature name to list of values."""
    return {name: feature_to_json(f) for name, f in example.features.feature.items()}


def example_from_json(obj, where: str) -> example_pb2.Example:
    """Returns the tf.Example a JSON object stands for (`where` names it in errors).

    Raises:
        ServingError: INVALID_ARGUMENT for anything but an object of valid features.
    """
    if not isinstance(obj, dict):
        raise invalid_argument(f"{where} must be a JSON object of feature name to value")
    example = example_pb2.Example()
    for name, value in obj.items():
        example.features.feature[name].CopyFrom(feature_from_json(name, value))
    return example


# ---- requests -----------------------------------------------------------------------------


def input_to_json(signature_name: str, model_input: input_pb2.Input) -> dict:
    """Returns the REST classify/regress body for an Input (examples, and context if any)."""
    body: dict = {"signature_name": signature_name}
    if model_input.WhichOneof("kind") == "example_list_with_context":
        with_context = model_input.example_list_with_context
        body["context"] = example_to_json(with_context.context)
        body["examples"] = [example_to_json(e) for e in with_context.examples]
    else:
        body["examples"] = [example_to_json(e) for e in model_input.example_list.examples]
    return body


def input_from_json(body: dict) -> tuple[str, input_pb2.Input]:
    """Returns (signature_name, Input) for a REST classify/regress body.

    Raises:
        ServingError: INVALID_ARGUMENT for a body without a list of example objects.
    """
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid_argument('"examples" must be a non-empty JSON list of objects')
    model_input = input_pb2.Input()
    if "context" in body:
        target = model_input.example_list_with_context
        target.context.CopyFrom(example_from_json(body["context"], '"context"'))
    else:
        target = model_input.example_list
    for index, obj in enumerate(examples):
        target.examples.append(example_from_json(obj, f"examples[{index}]"))
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument('"signature_name" must be a string')
    return signature_name, model_input


# ---- answers ------------------------------------------------------------------------------


def classification_to_json(result: classification_pb2.ClassificationResult) -> dict:
    """Returns {"results": [[[label, score], ...], ...]} for a ClassificationResult."""
    return {
        "results": [
            [[c.label, c.score] for c in classifications.classes]
            for classifications in result.classifications
        ]
    }


def classification_from_json(body: dict) -> classification_pb2.ClassificationResult:
    """Returns the ClassificationResult of a REST classify answer."""
    result = classification_pb2.ClassificationResult()
    for row in body["results"]:
        classifications = result.classifications.add()
        for label, score in row:
            classifications.classes.add(label=label, score=score)
    return result


def regression_to_json(result: regression_pb2.RegressionResult) -> dict:
    """Returns {"results": [value, ...]} for a RegressionResult."""
    return {"results": [r.value for r in result.regressions]}


def regression_from_json(body: dict) -> regression_pb2.RegressionResult:
    """Returns the RegressionResult of a REST regress answer."""
    result = regression_pb2.RegressionResult()
    for value in body["results"]:
        result.regressions.add(value=value)
    return result
