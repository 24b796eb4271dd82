"""SignatureValidator and WarmupRequestWriter inside the penguin pipeline, under LocalDagRunner."""

from __future__ import annotations

import json

import pytest

from tfx_serving_ext.serving.volume import list_versions
from tfx_serving_ext.serving.warmup import read_warmup_file


@pytest.mark.slow
def test_penguin_pipeline_validates_warms_up_and_pushes(tmp_path):
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines.penguin import DATA_DIR
    from pipelines.penguin.pipeline import create_pipeline

    serving = tmp_path / "serving" / "penguin"
    contract = {
        "serving_default": {"method": "predict", "inputs": {"examples": {"dtype": "string"}}}
    }
    LocalDagRunner().run(
        create_pipeline(
            pipeline_root=str(tmp_path / "root"),
            data_root=str(DATA_DIR),
            serving_model_dir=str(serving),
            metadata_path=str(tmp_path / "mlmd.sqlite"),
            epochs=3,
            validate_signatures=True,
            signature_contract=contract,
            warmup_examples=8,
        )
    )
    (blessing,) = (tmp_path / "root" / "SignatureValidator" / "blessing").iterdir()
    assert (blessing / "BLESSED").exists()
    report = json.loads((blessing / "report.json").read_text())
    ran = {c["signature"] for c in report["checks"] if c["name"] == "runs_on_examples"}
    assert ran == {"serving_default", "predict_features"}

    (version_dir,) = list_versions(serving).values()
    logs = read_warmup_file(version_dir)
    signatures = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert sorted(set(signatures)) == ["predict_features", "serving_default"]
    assert signatures.count("serving_default") == signatures.count("predict_features") == 8
