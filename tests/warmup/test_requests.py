"""Request building: the kind of request TF Serving expects for each signature."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tfx_serving_ext.checks.requests import (
    build_requests,
    from_prediction_log,
)
from tfx_serving_ext.protocol.saved_model import find_serving_model_dir, read_signature_defs
from tfx_serving_ext.testing.toy_models import make_examples


def test_half_plus_two_gets_classify_regress_and_typed_predict_requests(warmup_models):
    import tensorflow as tf

    defs = read_signature_defs(find_serving_model_dir(warmup_models["half_plus_two"]))
    requests = build_requests(defs, make_examples([2.0, 3.0]), "hp2")
    kinds = {(r.signature_name, r.kind) for r in requests}
    assert kinds == {
        ("classify_x_to_y", "classify"),
        ("regress_x_to_y", "regress"),
        ("serving_default", "predict"),
    }
    assert len(requests) == 6
    classify = next(r for r in requests if r.kind == "classify")
    assert type(classify.request).__name__ == "ClassificationRequest"
    assert classify.request.model_spec.name == "hp2"
    assert classify.request.model_spec.signature_name == "classify_x_to_y"
    (example,) = classify.request.input.example_list.examples
    assert example.features.feature["x"].float_list.value == [2.0]
    predict = [r for r in requests if r.kind == "predict"]
    values = [tf.make_ndarray(r.request.inputs["x"]) for r in predict]
    assert [v.tolist() for v in values] == [[2.0], [3.0]] and values[0].dtype == np.float32
    # Round trip through the warmup record type.
    back = from_prediction_log(classify.to_prediction_log())
    assert back == classify


def test_serialized_and_typed_predict_signatures_with_batches(warmup_models):
    import tensorflow as tf

    defs = read_signature_defs(find_serving_model_dir(warmup_models["toy"]))
    records = make_examples([1.0, 2.0, 3.0])
    requests = build_requests(defs, records, "toy", batch_size=2)
    by_signature = {}
    for r in requests:
        by_signature.setdefault(r.signature_name, []).append(r)
    serialized = by_signature["serving_default"]
    assert [len(r.request.inputs["examples"].string_val) for r in serialized] == [2, 1]
    assert list(serialized[0].request.inputs["examples"].string_val) == records[:2]
    typed = by_signature["predict_xw"][0].request
    assert sorted(typed.inputs) == ["w", "x"]
    assert tf.make_ndarray(typed.inputs["x"]).tolist() == [1.0, 2.0]


def test_signature_the_examples_cannot_fill_is_skipped_with_a_reason(warmup_models):
    import tensorflow as tf

    defs = read_signature_defs(find_serving_model_dir(warmup_models["toy"]))
    only_x = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))}
            )
        )
    ]
    skipped: dict[str, str] = {}
    requests = build_requests(defs, only_x, "toy", skipped=skipped)
    assert {r.signature_name for r in requests} == {"serving_default"}
    assert skipped == {"predict_xw": "the examples have no feature 'w'"}
    with pytest.raises(KeyError, match="no signature \\['nope'\\]"):
        build_requests(defs, only_x, "toy", signature_names=["nope"])


def test_penguin_model_requests(penguin_model_dir, penguin_examples):
    defs = read_signature_defs(penguin_model_dir)
    requests = build_requests(defs, penguin_examples[:3], "penguin")
    kinds = {}
    for r in requests:
        kinds.setdefault(r.signature_name, set()).update(r.request.inputs)
    assert kinds["serving_default"] == {"examples"}
    assert kinds["predict_features"] == {
        "culmen_length_mm",
        "culmen_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
    }
    assert len(requests) == 6


def _save_tf1_example_signature(export_dir, method: str, input_key: str, outputs: dict) -> None:
    """Saves a TF1 SavedModel whose one signature parses float `x` from serialized Examples.

    `outputs` maps an output key to "y" ([batch, 1] float), "flat" ([batch] float) or "wide"
    ([batch, 2] float).
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        x = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})["x"]
        tensors = {"y": x * 0.5 + 2.0, "flat": tf.reshape(x, [-1]), "wide": tf.concat([x, x], 1)}
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            {input_key: info(serialized)},
            {key: info(tensors[kind]) for key, kind in outputs.items()},
            f"tensorflow/serving/{method}",
        )
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()


@pytest.mark.parametrize(
    ("method", "input_key", "outputs", "expected"),
    [
        ("classify", "examples", {"scores": "y"}, "needs exactly one, named 'inputs'"),
        ("classify", "inputs", {"scores": "flat"}, "'scores' as float32[1] for 1 example(s)"),
        ("regress", "inputs", {"outputs": "wide"}, "'outputs' as float32[1, 2] for 1 example"),
        ("regress", "inputs", {"outputs": "y", "extra": "y"}, "has 2 outputs"),
    ],
)
def test_replay_refuses_example_requests_tf_serving_would_refuse(
    tmp_path, method, input_key, outputs, expected
):
    from tfx_serving_ext.checks.model_runner import LocalModel, RequestFailed

    _save_tf1_example_signature(tmp_path / "m", method, input_key, outputs)
    defs = read_signature_defs(tmp_path / "m")
    model = LocalModel(tmp_path / "m")
    (request,) = build_requests(defs, make_examples([2.0]), "m")
    with pytest.raises(RequestFailed, match=re.escape(expected)):
        model.run(request)


def test_replay_answers_example_requests_tf_serving_accepts(tmp_path):
    from tfx_serving_ext.checks.model_runner import LocalModel

    _save_tf1_example_signature(tmp_path / "m", "regress", "inputs", {"outputs": "y"})
    (request,) = build_requests(read_signature_defs(tmp_path / "m"), make_examples([2.0]), "m")
    outputs = LocalModel(tmp_path / "m").run(request)
    assert outputs["outputs"].numpy().tolist() == [[3.0]]
