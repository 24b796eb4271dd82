"""ServingPusher executor and component without a server: blessings, model choice, properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from tests.pusher.conftest import model_artifact
from tfx_serving_ext.components.serving_pusher import ServingPusher, executor


def blessing(kind, tmp_path: Path, blessed: int | None):
    artifact = kind()
    artifact.uri = str(tmp_path / f"{kind.TYPE_NAME}-{blessed}")
    Path(artifact.uri).mkdir()
    if blessed is not None:
        artifact.set_int_custom_property("blessed", blessed)
    return artifact


@pytest.fixture
def run(tmp_path, half_plus_two_dir):
    base = tmp_path / "serving"
    model = model_artifact(tmp_path / "model", half_plus_two_dir)
    runs = iter(range(100))

    def run(**inputs):
        pushed = standard_artifacts.PushedModel()
        pushed.uri = str(tmp_path / "pushed" / str(next(runs)))
        Path(pushed.uri).mkdir(parents=True)
        input_dict = {
            "model": [model],
            **{k: v if isinstance(v, list) else [v] for k, v in inputs.items()},
        }
        props = {
            "destination": "serving_volume",
            "push_destination": json.dumps({"base_directory": str(base), "model_name": "m"}),
        }
        executor.Executor().Do(input_dict, {"pushed_model": [pushed]}, props)
        return pushed

    run.base = base
    return run


def test_blessed_model_is_pushed_and_recorded_like_the_stock_pusher(run, tmp_path):
    pushed = run(
        model_blessing=blessing(standard_artifacts.ModelBlessing, tmp_path, 1),
        infra_blessing=blessing(standard_artifacts.InfraBlessing, tmp_path, 1),
    )
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == "1"
    assert pushed.get_string_custom_property("pushed_destination") == str(run.base / "1")
    assert pushed.get_string_custom_property("verification") == "not_verified"
    assert (run.base / "1" / "saved_model.pb").is_file()
    assert (Path(pushed.uri) / "saved_model.pb").is_file()  # archived copy, as the stock Pusher
    second = run()
    assert second.get_string_custom_property("pushed_version") == "2"


@pytest.mark.parametrize(
    "key,kind,blessed",
    [
        ("model_blessing", standard_artifacts.ModelBlessing, 0),  # SignatureValidator / Evaluator
        ("infra_blessing", standard_artifacts.InfraBlessing, 0),  # ServingCanary / InfraValidator
        ("model_blessing", standard_artifacts.ModelBlessing, None),  # no verdict at all
    ],
)
def test_unblessed_model_is_not_pushed(run, tmp_path, key, kind, blessed):
    other = "infra_blessing" if key == "model_blessing" else "model_blessing"
    other_kind = (
        standard_artifacts.InfraBlessing
        if other == "infra_blessing"
        else standard_artifacts.ModelBlessing
    )
    pushed = run(
        **{key: blessing(kind, tmp_path, blessed), other: blessing(other_kind, tmp_path, 1)}
    )
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_string_custom_property("refused_by").startswith(key)
    assert not run.base.exists() or not [p for p in run.base.iterdir() if p.name.isdigit()]


def test_blessing_channel_that_resolved_to_nothing_refuses_the_push(run, tmp_path):
    # The stock Pusher treats an empty blessing list as "not given" and pushes.
    pushed = run(
        model_blessing=[], infra_blessing=blessing(standard_artifacts.InfraBlessing, tmp_path, 1)
    )
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_string_custom_property("refused_by").startswith(
        "model_blessing was given but resolved to no artifact"
    )
    assert not run.base.exists() or not [p for p in run.base.iterdir() if p.name.isdigit()]


def test_warmed_up_model_of_the_infra_blessing_is_pushed(run, tmp_path, half_plus_three_dir):
    import shutil

    infra = blessing(standard_artifacts.InfraBlessing, tmp_path, 1)
    shutil.copytree(half_plus_three_dir, Path(infra.uri) / "stamped_model")
    (Path(infra.uri) / "stamped_model" / "assets.extra").mkdir()
    (Path(infra.uri) / "stamped_model" / "assets.extra" / "tf_serving_warmup_requests").write_bytes(
        b""
    )
    infra.set_int_custom_property("has_model", 1)
    pushed = run(infra_blessing=infra)
    assert pushed.get_int_custom_property("pushed") == 1
    assert (run.base / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_component_validates_destination_at_construction():
    from tfx.types import channel_utils

    model = channel_utils.as_channel([standard_artifacts.Model()])
    pusher = ServingPusher(model=model, push_destination={"base_directory": "/srv/m"})
    assert json.loads(pusher.exec_properties["push_destination"])["base_directory"] == "/srv/m"
    assert pusher.outputs["pushed_model"].type is standard_artifacts.PushedModel
    with pytest.raises(ValueError, match="unknown destination"):
        ServingPusher(model=model, push_destination={}, destination="ftp")
    with pytest.raises(ValueError, match="model name"):
        ServingPusher(model=model, push_destination={"base_directory": "/x", "model_name": "../x"})


def test_component_compiles_for_kfp_v2(tmp_path):
    from tfx.dsl.components.common import importer
    from tfx.orchestration import pipeline
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kv2

    model = importer.Importer(
        source_uri="gs://bucket/model", artifact_type=standard_artifacts.Model
    ).with_id("model")
    pusher = ServingPusher(
        model=model.outputs["result"],
        push_destination={"base_directory": "/serving/m", "model_name": "m", "keep_versions": 3},
    )
    kv2.KubeflowV2DagRunner(
        config=kv2.KubeflowV2DagRunnerConfig(default_image="tfx-serving-ext:test"),
        output_dir=str(tmp_path),
        output_filename="pipeline.json",
    ).run(pipeline.Pipeline(pipeline_name="p", pipeline_root="gs://bucket/root",
                            components=[model, pusher]))  # fmt: skip
    spec = json.loads((tmp_path / "pipeline.json").read_text())["pipelineSpec"]
    params = spec["root"]["dag"]["tasks"]["ServingPusher"]["inputs"]["parameters"]
    destination = params["push_destination"]["runtimeValue"]["constantValue"]["stringValue"]
    assert json.loads(destination)["keep_versions"] == 3
    assert params["destination"]["runtimeValue"]["constantValue"]["stringValue"] == "serving_volume"
