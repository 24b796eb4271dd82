"""ServingCanary in pipelines: the stock Pusher honours its blessing under LocalDagRunner, and
the component compiles into a KFP v2 pipeline (which refuses InfraValidator)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tfx.components import Pusher
from tfx.dsl.components.common.importer import Importer
from tfx.orchestration import metadata, pipeline
from tfx.proto import infra_validator_pb2, pusher_pb2
from tfx.types import standard_artifacts

from tfx_serving_ext.components.serving_canary import ServingCanary


def _trainer_layout(model_dir: Path, root: Path) -> Path:
    """Returns a Model artifact directory in the TFX Trainer layout (`Format-Serving/`)."""
    shutil.copytree(model_dir, root / "Format-Serving")
    return root


def _examples_artifact(records: list[bytes], root: Path) -> Path:
    import tensorflow as tf

    split = root / "Split-eval"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return root


def _nodes(models: dict[str, Path], examples_uri: Path, serving_dir: Path) -> list:
    examples = Importer(
        source_uri=str(examples_uri),
        artifact_type=standard_artifacts.Examples,
        properties={"split_names": '["eval"]'},
    ).with_id("examples")
    baseline = Importer(
        source_uri=str(models["baseline"]), artifact_type=standard_artifacts.Model
    ).with_id("baseline")
    nodes = [examples, baseline]
    for name in ("good", "broken"):
        model = Importer(
            source_uri=str(models[name]), artifact_type=standard_artifacts.Model
        ).with_id(f"{name}_model")
        canary = ServingCanary(
            model=model.outputs["result"],
            examples=examples.outputs["result"],
            baseline=baseline.outputs["result"],
            validation_spec=infra_validator_pb2.ValidationSpec(
                max_loading_time_seconds=60, num_tries=1
            ),
            # What this test judges is the blessing the stock Pusher reads; a latency ratio over
            # 30 requests of a 1 ms model on a busy CI machine is scheduling noise.
            config={"num_requests": 30, "concurrency": 2, "thresholds": {"ratio_slack_ms": 25}},
            backend="embedded",
        ).with_id(f"{name}_canary")
        pusher = Pusher(
            model=model.outputs["result"],
            infra_blessing=canary.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(
                    base_directory=str(serving_dir / name)
                )
            ),
        ).with_id(f"{name}_pusher")
        nodes += [model, canary, pusher]
    return nodes


def test_stock_pusher_honours_the_canary_blessing(
    canary_models, penguin_records, tmp_path, monkeypatch
):
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    models = {
        "baseline": _trainer_layout(canary_models["good"], tmp_path / "baseline"),
        "good": _trainer_layout(canary_models["good"], tmp_path / "good"),
        "broken": _trainer_layout(canary_models["broken"], tmp_path / "broken"),
    }
    examples_uri = _examples_artifact(penguin_records[:20], tmp_path / "examples")
    serving_dir = tmp_path / "serving"
    LocalDagRunner().run(
        pipeline.Pipeline(
            pipeline_name="canary-test",
            pipeline_root=str(tmp_path / "root"),
            components=_nodes(models, examples_uri, serving_dir),
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                str(tmp_path / "mlmd.sqlite")
            ),
        )
    )
    [good_blessing] = (tmp_path / "root" / "good_canary" / "blessing").glob("*")
    assert (good_blessing / "INFRA_BLESSED").exists()
    assert json.loads((good_blessing / "report.json").read_text())["verdict"]["blessed"]
    assert (good_blessing / "report.html").exists()
    [broken_blessing] = (tmp_path / "root" / "broken_canary" / "blessing").glob("*")
    assert (broken_blessing / "INFRA_NOT_BLESSED").exists()
    assert "cannot be parsed" in (broken_blessing / "server.log").read_text()
    # The stock Pusher pushed the blessed model and nothing of the refused one.
    [pushed_version] = list((serving_dir / "good").iterdir())
    assert (pushed_version / "saved_model.pb").exists()
    assert not (serving_dir / "broken").exists()


def test_canary_compiles_into_a_kfp_v2_pipeline(tmp_path):
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    models = {name: tmp_path / name for name in ("baseline", "good", "broken")}
    output = tmp_path / "pipeline.json"
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image="canary:test"),
        output_dir=str(tmp_path),
        output_filename=output.name,
    )
    runner.run(
        pipeline.Pipeline(
            pipeline_name="canary-kfp",
            pipeline_root="gs://bucket/root",
            components=_nodes(models, tmp_path / "examples", tmp_path / "serving"),
        ),
        write_out=True,
    )
    compiled = json.loads(output.read_text())
    executors = compiled["pipelineSpec"]["deploymentSpec"]["executors"]
    canary = executors["good_canary_executor"]["container"]
    assert canary["image"] == "canary:test"
    assert any(
        "tfx_serving_ext.components.serving_canary.executor.Executor" in arg
        for arg in canary["args"]
    )
    component = compiled["pipelineSpec"]["components"]["good_canary"]
    blessing = component["outputDefinitions"]["artifacts"]["blessing"]
    assert "InfraBlessing" in json.dumps(blessing["artifactType"])
    assert {"canary_config", "validation_spec"} <= set(component["inputDefinitions"]["parameters"])
    assert {"model", "examples", "baseline"} <= set(component["inputDefinitions"]["artifacts"])


@pytest.mark.parametrize(
    "bad", [{"num_requests": 0}, {"max_seconds": 0}, {"thresholds": {"max_p99": 2}}]
)
def test_component_refuses_a_bad_config_at_construction(bad):
    from tfx_serving_ext.canary.judge import ThresholdsError
    from tfx_serving_ext.canary.run import CanaryConfigError

    model = Importer(source_uri="/m", artifact_type=standard_artifacts.Model).with_id("m")
    with pytest.raises((CanaryConfigError, ThresholdsError)):
        ServingCanary(model=model.outputs["result"], config=bad)
