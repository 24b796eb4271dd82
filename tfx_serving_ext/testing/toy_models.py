"""Small real SavedModels with chosen serving interfaces, for signature and warmup tests.

`save_toy_model` (TF2) gives a `serving_default` that takes serialized tf.Examples with float
features `x` and `w`, and a typed `predict_xw` signature; its switches produce the breaking
variants (a removed input, a changed dtype, no `serving_default`, a static batch dimension, a
signature that fails at run time). `save_half_plus_two_tf1` (TF1 graph) gives the classify and
regress signatures of TF Serving's reference model, plus the float-input classify variant that
TF Serving cannot serve.
"""

from __future__ import annotations

import os
from pathlib import Path


def make_examples(values: list[float], *, extra: dict | None = None) -> list[bytes]:
    """Returns serialized tf.Examples with float features `x` = value, `w` = 1.0, `index` = i."""
    import tensorflow as tf

    examples = []
    for index, value in enumerate(values):
        feature = {
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=[value])),
            "w": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])),
            "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[index])),
        }
        for key, feat in (extra or {}).items():
            feature[key] = feat
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        examples.append(example.SerializeToString())
    return examples


def save_toy_model(
    export_dir: str | os.PathLike,
    *,
    scale: float = 0.5,
    x_dtype: str = "float32",
    with_w: bool = True,
    default_name: str = "serving_default",
    batch: int | None = None,
    fail_at_run_time: bool = False,
) -> Path:
    """Returns `export_dir` after saving y = scale·x·w + 2 with the chosen interface.

    Args:
        export_dir: where the SavedModel is written.
        scale: the weight (a "retrain" changes only this).
        x_dtype: dtype of the typed input `x`.
        with_w: whether `predict_xw` has its second input `w`.
        default_name: name of the serialized-example signature.
        batch: static batch size of the typed inputs (None: dynamic).
        fail_at_run_time: the typed signature fails on any positive x (an assertion).
    """
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(x_dtype)

    class Toy(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(scale, dtype=tf.float32)

        def compute(self, x, w):
            if fail_at_run_time:
                tf.debugging.assert_less(x, 0.0, message="x must be negative")
            return self.scale * x * w + 2.0

    module = Toy()
    feature_spec = {"x": tf.io.FixedLenFeature([], tf.float32)}
    if with_w:
        feature_spec["w"] = tf.io.FixedLenFeature([], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def from_examples(examples):
        parsed = tf.io.parse_example(examples, feature_spec)
        return {"y": module.compute(parsed["x"], parsed.get("w", tf.ones_like(parsed["x"])))}

    specs = [tf.TensorSpec([batch], dtype, name="x")]
    if with_w:
        specs.append(tf.TensorSpec([batch], tf.float32, name="w"))

        @tf.function(input_signature=specs)
        def typed(x, w):
            return {"y": module.compute(tf.cast(x, tf.float32), w)}
    else:

        @tf.function(input_signature=specs)
        def typed(x):
            return {"y": module.compute(tf.cast(x, tf.float32), tf.ones_like(x, tf.float32))}

    signatures = {default_name: from_examples, "predict_xw": typed}
    tf.saved_model.save(module, str(export_dir), signatures=signatures)
    return Path(export_dir)


def save_half_plus_two_tf1(
    export_dir: str | os.PathLike, *, float_classify_input: bool = False
) -> Path:
    """Returns `export_dir` after saving TF Serving's "half plus two" as a TF1 graph.

    Signatures: `serving_default` (predict, float `x` -> `y`), `classify_x_to_y` (classify,
    serialized tf.Example with float `x` -> `scores`) and `regress_x_to_y` (regress -> `outputs`).
    With `float_classify_input`, `classify_x_to_y` takes the float `x` directly, which TF
    Serving's Classify cannot feed.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        x = v1.placeholder(tf.float32, [None], name="x")
        y = tf.add(tf.multiply(a, x), b, name="y")
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})
        y_ex = tf.add(tf.multiply(a, parsed["x"]), b, name="y_ex")
        build = v1.saved_model.signature_def_utils.build_signature_def
        info = v1.saved_model.utils.build_tensor_info
        constants = v1.saved_model.signature_constants
        classify_input = info(x) if float_classify_input else info(serialized)
        classify_output = info(tf.reshape(y, [-1, 1])) if float_classify_input else info(y_ex)
        signatures = {
            "serving_default": build({"x": info(x)}, {"y": info(y)}, constants.PREDICT_METHOD_NAME),
            "classify_x_to_y": build(
                {constants.CLASSIFY_INPUTS: classify_input},
                {constants.CLASSIFY_OUTPUT_SCORES: classify_output},
                constants.CLASSIFY_METHOD_NAME,
            ),
            "regress_x_to_y": build(
                {constants.REGRESS_INPUTS: info(serialized)},
                {constants.REGRESS_OUTPUTS: info(y_ex)},
                constants.REGRESS_METHOD_NAME,
            ),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()
    return Path(export_dir)
