"""The stock TFX Pusher honours our ModelBlessing, under LocalDagRunner."""

from __future__ import annotations

import shutil

from tfx_serving_ext.publish.volume import list_versions


def test_stock_pusher_pushes_blessed_and_refuses_not_blessed(tmp_path, toy_models):
    from tfx.components import Pusher
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts

    from tfx_serving_ext import SignatureValidator

    components, serving = [], {}
    for name, variant in (("good", "retrain"), ("bad", "no_serving_default")):
        uri = tmp_path / "models" / name
        shutil.copytree(toy_models[variant], uri / "Format-Serving")  # TFX Trainer layout
        baseline_uri = tmp_path / "models" / f"{name}_baseline"
        shutil.copytree(toy_models["baseline"], baseline_uri / "Format-Serving")
        model = Importer(source_uri=str(uri), artifact_type=standard_artifacts.Model).with_id(
            f"import_{name}"
        )
        baseline = Importer(
            source_uri=str(baseline_uri), artifact_type=standard_artifacts.Model
        ).with_id(f"import_{name}_baseline")
        validator = SignatureValidator(
            model=model.outputs["result"], baseline_model=baseline.outputs["result"]
        ).with_id(f"validate_{name}")
        serving[name] = tmp_path / "serving" / name
        pusher = Pusher(
            model=model.outputs["result"],
            model_blessing=validator.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving[name]))
            ),
        ).with_id(f"push_{name}")
        components += [model, baseline, validator, pusher]

    LocalDagRunner().run(
        pipeline.Pipeline(
            pipeline_name="blessing-honoured",
            pipeline_root=str(tmp_path / "root"),
            components=components,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                str(tmp_path / "mlmd.sqlite")
            ),
            enable_cache=False,
        )
    )
    pushed = list_versions(serving["good"])
    assert len(pushed) == 1
    assert (next(iter(pushed.values())) / "saved_model.pb").is_file()
    assert not serving["bad"].exists() or not list_versions(serving["bad"])
    (bad_blessing,) = (tmp_path / "root" / "validate_bad" / "blessing").iterdir()
    assert (bad_blessing / "NOT_BLESSED").exists()
    assert "serving_default" in (bad_blessing / "report.json").read_text()
