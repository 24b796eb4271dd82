"""Builds TF Serving's "half plus two" reference model: y = 0.5 * x + 2, TF1 style.

Signatures (as in tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two):
- `serving_default` (predict): input `x` (float, any shape), output `y`.
- `classify_x_to_y` (classify): input `inputs` (serialized tf.Example with float feature `x`),
  output `scores` of shape [batch, 1].
- `regress_x_to_y` (regress): input `inputs`, output `outputs` of shape [batch, 1].
- `regress_x2_to_y3` (regress): like `regress_x_to_y` on feature `x2` (default 0), y = 0.5 x2 + 3.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_VERSION_DIR = "00000123"


def build_half_plus_two(export_dir: str | os.PathLike) -> Path:
    """Returns `export_dir` after writing the half-plus-two SavedModel into it.

    `export_dir` must not exist yet (it is the version directory, e.g. `<base>/00000123`).
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    export_dir = Path(export_dir)
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        c = v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = v1.io.parse_example(
            serialized,
            {
                "x": tf.io.FixedLenFeature([1], tf.float32),
                "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        x = v1.placeholder(tf.float32, shape=None, name="x")
        y = tf.add(tf.multiply(a, x), b, name="y")
        y_from_example = tf.add(tf.multiply(a, features["x"]), b, name="y_from_example")
        y3_from_example = tf.add(tf.multiply(a, features["x2"]), c, name="y3_from_example")

        build = v1.saved_model.utils.build_tensor_info
        signatures = {
            "serving_default": v1.saved_model.signature_def_utils.predict_signature_def(
                inputs={"x": x}, outputs={"y": y}
            ),
            "classify_x_to_y": v1.saved_model.signature_def_utils.build_signature_def(
                inputs={"inputs": build(serialized)},
                outputs={"scores": build(y_from_example)},
                method_name="tensorflow/serving/classify",
            ),
            "regress_x_to_y": v1.saved_model.signature_def_utils.build_signature_def(
                inputs={"inputs": build(serialized)},
                outputs={"outputs": build(y_from_example)},
                method_name="tensorflow/serving/regress",
            ),
            "regress_x2_to_y3": v1.saved_model.signature_def_utils.build_signature_def(
                inputs={"inputs": build(serialized)},
                outputs={"outputs": build(y3_from_example)},
                method_name="tensorflow/serving/regress",
            ),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map=signatures, strip_default_attrs=True
            )
            builder.save()
    return export_dir
