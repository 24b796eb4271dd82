"""TFX's own test-data models, as tfx ships them, through inspect, validator, warmup and push.

The layouts are the ones the stock Trainer and Pusher write: the Keras Trainer's
`Format-Serving/` (`trainer/keras`, a penguin model), the Estimator Trainer's
`Format-Serving/export/chicago-taxi/<timestamp>/` (`trainer/current`, `trainer/previous`) and a
pushed copy `<dir>/<version>/` (`pusher/model_push`, whose graph uses `BoostedTreesBucketize`, an
op without a kernel in today's TensorFlow: it must be refused, with the op named).
"""

from __future__ import annotations

import json
from pathlib import Path

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
    read_examples,
)
from tfx_serving_ext.cli import main
from tfx_serving_ext.components.serving_pusher import executor as pusher
from tfx_serving_ext.components.signature_validator import executor as validator
from tfx_serving_ext.protocol.saved_model import SavedModelError, find_serving_model_dir


@pytest.mark.parametrize(
    "model_uri, expected",
    [
        (KERAS, KERAS / "Format-Serving"),
        (ESTIMATOR, ESTIMATOR / "Format-Serving" / "export" / "chicago-taxi" / "1646034756"),
        (ESTIMATOR_PREVIOUS, ESTIMATOR_PREVIOUS / "Format-Serving/export/chicago-taxi/1646034756"),
        (PUSHED, PUSHED / "1584391735"),
        (PUSHED / "1584391735", PUSHED / "1584391735"),
    ],
)
def test_every_layout_tfx_writes_is_found(model_uri, expected):
    assert find_serving_model_dir(model_uri) == expected


def test_estimator_exporter_that_kept_several_exports_serves_the_newest(tmp_path):
    import shutil

    export = tmp_path / "model" / "Format-Serving" / "export" / "taxi"
    source = find_serving_model_dir(ESTIMATOR)
    for stamp in ("1646034756", "1646099999"):
        shutil.copytree(source, export / stamp)
    assert find_serving_model_dir(tmp_path / "model") == export / "1646099999"


def test_no_model_error_names_every_layout_tried(tmp_path):
    with pytest.raises(SavedModelError) as error:
        find_serving_model_dir(tmp_path)
    message = str(error.value)
    for layout in (
        "Format-Serving/saved_model.pb (Keras Trainer)",
        "Format-Serving/export/<exporter>/<timestamp>/saved_model.pb (Estimator Trainer)",
        "serving_model_dir/saved_model.pb",
        "(a bare SavedModel)",
        "<version>/saved_model.pb (a pushed copy",
    ):
        assert layout in message


@pytest.mark.parametrize("model_uri", [KERAS, ESTIMATOR, PUSHED])
def test_inspect_reads_every_layout(model_uri, capsys):
    assert main(["inspect", str(model_uri)]) == 0
    out = capsys.readouterr().out
    assert str(find_serving_model_dir(model_uri)) in out
    assert "signature 'serving_default'" in out


def _validate(tmp_path, model_uri: Path, examples_root: Path):
    blessing = artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing")
    examples = artifact(
        standard_artifacts.Examples, examples_root, split_names=json.dumps(["eval"])
    )
    validator.Executor().Do(
        {
            validator.MODEL_KEY: [artifact(standard_artifacts.Model, model_uri)],
            validator.EXAMPLES_KEY: [examples],
        },
        {validator.BLESSING_KEY: [blessing]},
        {},
    )
    return blessing, json.loads((tmp_path / "blessing" / "report.json").read_text())


@pytest.mark.parametrize(
    "model_uri, examples_root", [(KERAS, PENGUIN_EXAMPLES), (ESTIMATOR, TAXI_EXAMPLES)]
)
def test_validator_blesses_the_keras_and_estimator_models(tmp_path, model_uri, examples_root):
    blessing, report = _validate(tmp_path, model_uri, examples_root)
    assert blessing.get_int_custom_property("blessed") == 1, report
    assert report["model_dir"] == str(find_serving_model_dir(model_uri))
    assert any(c["name"] == "runs_on_examples" and c["passed"] for c in report["checks"])


def test_validator_refuses_the_model_with_a_kernel_less_op_and_names_it(tmp_path, caplog):
    blessing, report = _validate(tmp_path, PUSHED, TAXI_EXAMPLES)
    assert blessing.get_int_custom_property("blessed") == 0
    failed = [c for c in report["checks"] if not c["passed"]]
    assert failed and all(KERNEL_LESS_OP in c["message"] for c in failed)
    assert KERNEL_LESS_OP in caplog.text  # the component log says why, not only report.json


@pytest.mark.parametrize(
    "model_uri, examples_root", [(KERAS, PENGUIN_EXAMPLES), (ESTIMATOR, TAXI_EXAMPLES)]
)
def test_warmup_writer_warms_the_model_where_the_trainer_put_it(tmp_path, model_uri, examples_root):
    from tfx_serving_ext.checks.warmup import build_warmup_model

    result = build_warmup_model(model_uri, tmp_path / "warm", read_examples(examples_root, 4))
    relative = find_serving_model_dir(model_uri).relative_to(model_uri)
    assert (
        result.warmup_file
        == tmp_path / "warm" / relative / "assets.extra/tf_serving_warmup_requests"
    )
    assert result.warmup_file.stat().st_size > 0
    assert find_serving_model_dir(tmp_path / "warm") == tmp_path / "warm" / relative


def test_warmup_writer_refuses_the_model_with_a_kernel_less_op(tmp_path):
    from tfx_serving_ext.checks.warmup import build_warmup_model

    with pytest.raises(Exception, match=KERNEL_LESS_OP):
        build_warmup_model(PUSHED, tmp_path / "warm", read_examples(TAXI_EXAMPLES, 4))


@pytest.mark.parametrize("model_uri", [KERAS, ESTIMATOR, PUSHED])
def test_pusher_pushes_every_layout_to_the_serving_volume(tmp_path, model_uri):
    pushed = artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
    Path(pushed.uri).mkdir()
    base = tmp_path / "serving"
    pusher.Executor().Do(
        {"model": [artifact(standard_artifacts.Model, model_uri)]},
        {"pushed_model": [pushed]},
        {
            "destination": "serving_volume",
            "push_destination": json.dumps({"base_directory": str(base), "model_name": "taxi"}),
        },
    )
    assert pushed.get_int_custom_property("pushed") == 1
    assert (base / "1" / "saved_model.pb").is_file()
    assert (base / "1" / "variables" / "variables.index").is_file()
