"""The compiled KFP v2 pipeline, executed task by task as the KFP v2 launcher executes it.

`tests/kfp/launcher.py` builds each task's ExecutorInput from the compiled PipelineJob JSON and
runs the container's entrypoint (TFX's `kubeflow_v2_run_executor`) with this environment's
python. Nothing is mocked; what is not exercised is a live cluster (the image, the pod, object
storage, Vertex ML Metadata), which cannot run here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.kfp.launcher import ArtifactStore, Launcher
from tfx_serving_ext.protocol.versions import list_versions

FAST = {"epochs": 3, "canary_requests": 20}
IMAGE = "registry.test/tfx-serving-ext-pipeline:1"


def _compile(tmp_path, platform: str, name: str, **overrides):
    from pipelines.penguin import DATA_DIR
    from pipelines.penguin.kubeflow_v2_runner import compile_pipeline

    return compile_pipeline(
        tmp_path / name,
        platform=platform,
        image=IMAGE,
        pipeline_root=str(tmp_path / "pipeline_root"),
        data_root=str(DATA_DIR),
        serving_volume=str(tmp_path / "serving"),
        **FAST,
        **overrides,
    )


def _executors(job_path) -> dict:
    return json.loads(job_path.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_vertex_compile_runs_twice_and_the_second_run_compares_with_what_serves(tmp_path):
    """Run 1 pushes version 1; run 2 takes version 1 (serving now) as baseline, pushes 2."""
    job = _compile(tmp_path, "vertex", "penguin-serving.json")
    spec = json.loads(job.read_text())["pipelineSpec"]
    assert spec["schemaVersion"] == "2.1.0"
    assert not [k for k, e in _executors(job).items() if "resolver" in e]
    launcher = Launcher(job, ArtifactStore(tmp_path / "store" / "artifacts.json"))
    serving = tmp_path / "serving" / "penguin"
    timings = {}

    started = time.monotonic()
    run1 = launcher.run("penguin-serving-run-1")
    timings["run 1"] = time.monotonic() - started
    assert sorted(list_versions(serving)) == [1]
    pushed = run1.output("ServingPusher", "pushed_model")
    assert pushed["metadata"]["pushed"] == 1
    assert pushed["metadata"]["pushed_version"] == "1"
    validator_1 = run1.output("SignatureValidator", "blessing")["metadata"]
    assert validator_1["blessed"] == 1
    assert "baseline_version" not in validator_1  # first deployment: nothing served yet
    # The blessing names its model as the orchestrator does (the compiled Vertex resolver matches
    # `name="<current_model_id>"`), not as a hash of that name.
    assert validator_1["current_model_id"] == run1.output("PenguinTrainer", "model")["name"]

    started = time.monotonic()
    run2 = launcher.run("penguin-serving-run-2")
    timings["run 2"] = time.monotonic() - started
    validator_2 = run2.output("SignatureValidator", "blessing")["metadata"]
    assert validator_2["blessed"] == 1
    assert validator_2["baseline_version"] == 1
    assert validator_2["baseline_source"] == "volume"
    assert validator_2["baseline_model"] == str(list_versions(serving)[1])
    canary_2 = run2.output("ServingCanary", "blessing")
    assert canary_2["metadata"]["blessed"] == 1
    assert canary_2["metadata"]["baseline_version"] == 1
    report = json.loads((Path(canary_2["uri"]) / "report.json").read_text())
    assert report["latency_ms"]["baseline"]  # the baseline was served and measured
    pushed = run2.output("ServingPusher", "pushed_model")
    assert pushed["metadata"]["pushed"] == 1
    assert pushed["metadata"]["pushed_version"] == "2"
    assert sorted(list_versions(serving)) == [1, 2]
    assert (list_versions(serving)[2] / "assets.extra" / "tf_serving_warmup_requests").is_file()
    for run in (run1, run2):
        for task in run.tasks.values():
            timings[f"{run.job_id[-5:]} {task.name}"] = task.seconds
    print(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=1))
