"""The SignatureValidator executor writes a ModelBlessing the way the Evaluator does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from tfx_serving_ext.components.signature_validator import executor as validator
from tfx_serving_ext.protocol.saved_model import SavedModelError


def write_examples_artifact(root: Path, records: list[bytes]) -> Path:
    """Writes `records` as ExampleGen does (gzip TFRecord under Split-eval/); returns root."""
    import tensorflow as tf

    directory = root / "Split-eval"
    directory.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(directory / "data_tfrecord-00000-of-00001.gz"), options) as w:
        for record in records:
            w.write(record)
    return root


def _model(uri) -> standard_artifacts.Model:
    model = standard_artifacts.Model()
    model.uri = str(uri)
    return model


def _run(tmp_path, model_uri, baseline_uri=None, examples_uri=None, **exec_properties):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    inputs = {validator.MODEL_KEY: [_model(model_uri)]}
    if baseline_uri is not None:
        inputs[validator.BASELINE_MODEL_KEY] = [_model(baseline_uri)]
    if examples_uri is not None:
        examples = standard_artifacts.Examples()
        examples.uri = str(examples_uri)
        examples.split_names = json.dumps(["eval"])
        inputs[validator.EXAMPLES_KEY] = [examples]
    validator.Executor().Do(inputs, {validator.BLESSING_KEY: [blessing]}, exec_properties)
    return blessing, Path(blessing.uri)


def test_compatible_model_is_blessed_with_file_property_and_report(
    tmp_path, toy_models, toy_examples
):
    examples_uri = write_examples_artifact(tmp_path / "examples", toy_examples)
    blessing, directory = _run(
        tmp_path, toy_models["retrain"], toy_models["baseline"], examples_uri
    )
    assert blessing.get_int_custom_property("blessed") == 1
    assert (directory / "BLESSED").read_text() == ""
    assert not (directory / "NOT_BLESSED").exists()
    report = json.loads((directory / "report.json").read_text())
    assert report["blessed"] is True
    assert report["baseline_dir"] == str(toy_models["baseline"])
    ran = [c for c in report["checks"] if c["name"] == "runs_on_examples"]
    assert len(ran) == 2 and all(c["passed"] for c in ran)


def test_refused_model_is_a_successful_run_with_blessed_zero(tmp_path, toy_models):
    blessing, directory = _run(tmp_path, toy_models["dtype_changed"], toy_models["baseline"])
    assert blessing.get_int_custom_property("blessed") == 0
    assert (directory / "NOT_BLESSED").exists() and not (directory / "BLESSED").exists()
    failed = [c for c in json.loads((directory / "report.json").read_text())["checks"]]
    failed = [c for c in failed if not c["passed"]]
    assert failed == [
        {
            "name": "dtype_changed",
            "passed": False,
            "message": "input 'x' changed dtype DT_FLOAT -> DT_DOUBLE",
            "signature": "predict_xw",
        }
    ]


def test_contract_parameter_is_json(tmp_path, toy_models):
    contract = json.dumps({"signatures": {"serving_default": {"method": "regress"}}})
    blessing, _ = _run(tmp_path, toy_models["baseline"], **{validator.CONTRACT_KEY: contract})
    assert blessing.get_int_custom_property("blessed") == 0


def test_unreadable_model_fails_the_execution(tmp_path):
    empty = tmp_path / "no_model"
    empty.mkdir()
    with pytest.raises(SavedModelError, match="No SavedModel found"):
        _run(tmp_path, empty)


def test_blessing_names_its_model_so_latest_blessed_model_strategy_finds_it(tmp_path, toy_models):
    """KFP's baseline resolver (TFX's LatestBlessedModelStrategy) pairs blessings via model ids."""
    from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
        LatestBlessedModelStrategy,
    )

    candidate, baseline = _model(toy_models["retrain"]), _model(toy_models["baseline"])
    candidate.id, baseline.id = 7, 3
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    validator.Executor().Do(
        {validator.MODEL_KEY: [candidate], validator.BASELINE_MODEL_KEY: [baseline]},
        {validator.BLESSING_KEY: [blessing]},
        {},
    )
    assert blessing.get_int_custom_property("current_model_id") == 7
    assert blessing.get_string_custom_property("current_model") == candidate.uri
    assert blessing.get_int_custom_property("baseline_model_id") == 3

    resolved = LatestBlessedModelStrategy().resolve_artifacts(
        None, {"model": [baseline, candidate], "model_blessing": [blessing]}
    )
    assert resolved["model"] == [candidate]
