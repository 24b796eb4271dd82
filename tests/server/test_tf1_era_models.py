"""SavedModels from the TF 1.x era load and serve, as they do in tensorflow_model_server.

TF Serving loads with the C++ SavedModel loader, which reads old exports that TF2's Python
`tf.saved_model.load` refuses. The runner falls back to `tf.compat.v1.saved_model.loader.load` in
a Session of its own graph, says in the log which loader served the model, and when both fail
names both failures in the version's status.

The model built here carries the TF 1.x traits: GraphDef producer 21, the input placeholder's
`shape {}` (which in graphs that old meant "unknown", not "scalar"), the original `ParseExample`
op (rank-1 input only) and a signature output that is a ref-typed variable, which TF2's loader
refuses ("has a reference type float_ref").
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.server.conftest import example, publish
from tfx_serving_ext.checks.model_loading import TF1_LOADER, TF2_LOADER
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.protocol.saved_model import read_meta_graph
from tfx_serving_ext.server import InitialModelsUnavailable, ModelServer, ServerOptions

OLD_PRODUCER = 21


def _build_tf1_model(export_dir: Path) -> Path:
    """Returns `export_dir` holding an old-style half-plus-two (predict, classify, regress)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a", use_resource=False)
        b = v1.Variable(2.0, name="b", use_resource=False)
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        parsed = tf.raw_ops.ParseExample(
            serialized=serialized,
            names=tf.constant([], tf.string),
            sparse_keys=[],
            dense_keys=[tf.constant("x")],
            dense_defaults=[tf.constant([], tf.float32)],
            sparse_types=[],
            dense_shapes=[[1]],
        )
        y_from_example = tf.add(a * parsed.dense_values[0], b, name="y_from_example")
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        y = tf.add(a * x, b, name="y")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        signatures = {
            "serving_default": build(
                {"x": info(x)}, {"y": info(y), "a": info(a._ref())}, "tensorflow/serving/predict"
            ),
            "classify_x_to_y": build(
                {"inputs": info(serialized)},
                {"scores": info(y_from_example)},
                "tensorflow/serving/classify",
            ),
            "regress_x_to_y": build(
                {"inputs": info(serialized)},
                {"outputs": info(y_from_example)},
                "tensorflow/serving/regress",
            ),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.builder.SavedModelBuilder(str(export_dir))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()
    pb_path = export_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(pb_path.read_bytes())
    graph_def = saved_model.meta_graphs[0].graph_def
    graph_def.versions.producer = OLD_PRODUCER
    for node in graph_def.node:
        if node.op == "Placeholder":
            node.attr["shape"].shape.Clear()  # `shape {}`: "unknown" for producers <= 21
            del node.attr["_output_shapes"]
    pb_path.write_bytes(saved_model.SerializeToString())
    return export_dir


@pytest.fixture(scope="module")
def tf1_model_dir(tmp_path_factory) -> Path:
    return _build_tf1_model(tmp_path_factory.mktemp("tf1") / "export")


def test_the_model_is_what_tf2_refuses(tf1_model_dir):
    """The fixture really needs the fallback: TF2's loader refuses it, the v1 loader reads it."""
    import tensorflow as tf

    with pytest.raises(Exception, match="reference type"):
        tf.saved_model.load(str(tf1_model_dir))
    meta_graph = read_meta_graph(tf1_model_dir)
    assert meta_graph.graph_def.versions.producer == OLD_PRODUCER
    placeholder = next(n for n in meta_graph.graph_def.node if n.name == "tf_example")
    assert (
        placeholder.attr["shape"].shape.dim == []
        and not placeholder.attr["shape"].shape.unknown_rank
    )


def test_tf1_era_model_serves_predict_classify_regress(tmp_path, tf1_model_dir, caplog):
    base = tmp_path / "old"
    publish(tf1_model_dir, base, 7)
    options = ServerOptions(
        model_name="old", model_base_path=str(base), wait_for_initial_models=True
    )
    with caplog.at_level(logging.INFO, logger="tfx_serving_ext.checks.model_loading"):
        server = ModelServer(options).start()
    try:
        assert server.core.manager("old").servable().model.loader == TF1_LOADER
        assert any(
            TF1_LOADER in r.getMessage() and TF2_LOADER in r.getMessage() for r in caplog.records
        ), "the load log says which loader served the model and why the TF2 one did not"
        with ServingClient(server.grpc_address) as client:
            assert client.model_status("old")[0].state == "AVAILABLE"
            predicted = client.predict("old", {"x": [2.0, 3.0]})
            assert predicted.outputs["y"].tolist() == [3.0, 3.5]
            assert predicted.version == 7
            regressed = client.regress(
                "old", [example(x=2.0), example(x=4.0)], signature_name="regress_x_to_y"
            )
            assert [round(v, 5) for v in regressed.values] == [3.0, 4.0]
            classified = client.classify("old", [example(x=2.0)], signature_name="classify_x_to_y")
            assert classified.classes[0][0][1] == pytest.approx(3.0)
    finally:
        server.stop()


def test_when_both_loaders_fail_the_status_names_both(tmp_path, tf1_model_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    base = tmp_path / "broken"
    version_dir = publish(tf1_model_dir, base, 1)
    pb_path = version_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(pb_path.read_bytes())
    next(n for n in saved_model.meta_graphs[0].graph_def.node if n.name == "y").op = "NoSuchOp"
    pb_path.write_bytes(saved_model.SerializeToString())
    options = ServerOptions(
        model_name="broken",
        model_base_path=str(base),
        max_num_load_retries=0,
        wait_for_initial_models=True,
    )
    with pytest.raises(InitialModelsUnavailable) as raised:
        ModelServer(options).start()
    message = raised.value.failures["broken"]
    assert f"{TF2_LOADER} failed" in message and f"{TF1_LOADER} failed" in message
    assert "NoSuchOp" in message
