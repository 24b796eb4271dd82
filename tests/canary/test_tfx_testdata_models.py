"""TFX's own test-data models through the ServingCanary (embedded server) and its command.

The Keras Trainer's penguin model (`trainer/keras`) and the Estimator Trainer's taxi model
(`trainer/current`, against `trainer/previous`) are blessed; the pushed taxi model
(`pusher/model_push`) uses `BoostedTreesBucketize`, an op with no kernel in today's TensorFlow,
and is refused with the op named in the reasons, the component log and the command's output.
"""

from __future__ import annotations

import json

import pytest
from tfx.types import standard_artifacts

from tests.support.tfx_testdata import (
    ESTIMATOR,
    ESTIMATOR_PREVIOUS,
    KERAS,
    KERNEL_LESS_OP,
    PENGUIN_EXAMPLES,
    PUSHED,
    TAXI_EXAMPLES,
    artifact,
)
from tfx_serving_ext.cli import main
from tfx_serving_ext.components.serving_canary import executor as canary

SMALL_RUN = {"backend": "embedded", "num_requests": 12, "num_examples": 6, "unmeasured_requests": 2}


def run_executor(tmp_path, model_uri, examples_root, baseline_uri=None, **config):
    blessing = artifact(standard_artifacts.InfraBlessing, tmp_path / "blessing")
    inputs = {
        canary.MODEL_KEY: [artifact(standard_artifacts.Model, model_uri)],
        canary.EXAMPLES_KEY: [
            artifact(standard_artifacts.Examples, examples_root, split_names='["eval"]')
        ],
    }
    if baseline_uri is not None:
        inputs[canary.BASELINE_KEY] = [artifact(standard_artifacts.Model, baseline_uri)]
    context = canary.Executor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="canary")
    canary.Executor(context).Do(
        inputs,
        {canary.BLESSING_KEY: [blessing]},
        {canary.CANARY_CONFIG_KEY: json.dumps(SMALL_RUN | config)},
    )
    return blessing, json.loads((tmp_path / "blessing" / "report.json").read_text())


@pytest.mark.parametrize(
    "model_uri, examples_root, baseline_uri",
    [(KERAS, PENGUIN_EXAMPLES, None), (ESTIMATOR, TAXI_EXAMPLES, ESTIMATOR_PREVIOUS)],
)
def test_keras_and_estimator_models_are_blessed(tmp_path, model_uri, examples_root, baseline_uri):
    blessing, report = run_executor(tmp_path, model_uri, examples_root, baseline_uri)
    assert blessing.get_int_custom_property("blessed") == 1, report["verdict"]
    assert report["errors"]["candidate"]["count"] == 0
    assert (tmp_path / "blessing" / "INFRA_BLESSED").exists()
    # The blessing says what blessed it: here the embedded server, and its TensorFlow.
    import tensorflow as tf

    assert blessing.get_string_custom_property("server_kind") == "embedded"
    assert blessing.get_string_custom_property("server_tensorflow_version") == tf.__version__
    assert blessing.get_int_custom_property("tf_serving") == 0
    assert report["server"]["tensorflow_version"] == tf.__version__
    page = (tmp_path / "blessing" / "report.html").read_text()
    assert "Served by: <b>the embedded server" in page.split("INFRA_BLESSED")[0]


def test_embedded_run_is_refused_when_tf_serving_is_required(tmp_path):
    blessing, report = run_executor(
        tmp_path, KERAS, PENGUIN_EXAMPLES, require_tf_serving=True, num_requests=4
    )
    assert blessing.get_int_custom_property("blessed") == 0
    assert (tmp_path / "blessing" / "INFRA_NOT_BLESSED").exists()
    reason = report["verdict"]["reasons"][0]
    assert reason.startswith("TF Serving was required (require_tf_serving)")
    assert "the embedded server (embedded) under TensorFlow" in reason
    assert all(check["passed"] for check in report["verdict"]["checks"])  # only that refused


def test_model_with_a_kernel_less_op_is_refused_naming_the_op(tmp_path, caplog):
    blessing, report = run_executor(tmp_path, PUSHED, TAXI_EXAMPLES)
    assert blessing.get_int_custom_property("blessed") == 0
    reasons = report["verdict"]["reasons"]
    assert any(KERNEL_LESS_OP in reason for reason in reasons), reasons
    assert KERNEL_LESS_OP in caplog.text  # the component log says why, not only report.json
    page = (tmp_path / "blessing" / "report.html").read_text()
    assert KERNEL_LESS_OP in page.split("<h2>Checks</h2>")[0]  # under "Why not", at the top


def test_canary_command_prints_the_cause_and_does_not_crash_without_latencies(tmp_path, capsys):
    code = main(
        [
            "canary",
            str(PUSHED),
            "--examples",
            str(TAXI_EXAMPLES),
            "--num-examples",
            "4",
            "--requests",
            "8",
            "--output",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert out.startswith("NOT BLESSED")
    assert "reason: candidate error (8x): " in out and KERNEL_LESS_OP in out
    assert "candidate: no successful request" in out
    assert "served by: the embedded server (embedded) under TensorFlow" in out
