"""SignatureValidator and WarmupRequestWriter inside the penguin pipeline, under LocalDagRunner."""

from __future__ import annotations

import json

import pytest

from tfx_serving_ext.checks.warmup import read_warmup_file
from tfx_serving_ext.publish.volume import list_versions


@pytest.mark.slow
def test_penguin_pipeline_validates_warms_up_and_pushes_the_warmed_model(tmp_path):
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines.penguin import DATA_DIR
    from pipelines.penguin.pipeline import create_pipeline

    serving = tmp_path / "serving" / "penguin"
    LocalDagRunner().run(
        create_pipeline(
            pipeline_root=str(tmp_path / "root"),
            data_root=str(DATA_DIR),
            serving_model_dir=str(serving),
            metadata_path=str(tmp_path / "mlmd.sqlite"),
            epochs=3,
            canary_requests=20,
        )
    )
    (blessing,) = (tmp_path / "root" / "SignatureValidator" / "blessing").iterdir()
    assert (blessing / "BLESSED").exists()
    report = json.loads((blessing / "report.json").read_text())
    checked = {c["name"] for c in report["checks"]}
    assert {"serving_default_exists", "contract_input", "runs_on_examples"} <= checked
    ran = {c["signature"] for c in report["checks"] if c["name"] == "runs_on_examples"}
    assert ran == {"serving_default", "predict_features"}

    (warmed,) = (tmp_path / "root" / "WarmupRequestWriter" / "warmed_model").iterdir()
    logs = read_warmup_file(warmed / "Format-Serving")
    signatures = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert sorted(set(signatures)) == ["predict_features", "serving_default"]
    assert signatures.count("serving_default") == signatures.count("predict_features")

    (version_dir,) = list_versions(serving).values()
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").read_bytes() == (
        warmed / "Format-Serving" / "assets.extra" / "tf_serving_warmup_requests"
    ).read_bytes()
