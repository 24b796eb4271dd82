"""The template-style penguin pipeline compiled with TFX 1.16's KubeflowV2DagRunner and executed.

`tests/kfp/launcher.py` runs the compiled PipelineJob task by task as KFP's v2 launcher would:
each task's ExecutorInput built from the spec, TFX's `kubeflow_v2_run_executor` entrypoint run as
a process with this environment's python (the image is not used), the compiled
LatestBlessedModelStrategy resolver tasks answered from an artifact store that outlives a run,
as Vertex ML Metadata does. Independent tasks run two at a time, as KFP runs them in parallel.
Nothing is mocked; what is not exercised is a live cluster (image, pods, object storage).

Run 1 pushes version 1 and the embedded model server serves it; run 2 (retrained with another
seed, compiled with the server's address) compares with run 1's model, resolved by the compiled
resolver, pushes version 2, and the server swaps to it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipelines.penguin_tfx import pipeline as penguin_tfx
from pipelines.penguin_tfx.kubeflow_v2_runner import compile_pipeline
from tests.kfp.launcher import EXECUTOR_OUTPUT_FILE, ArtifactStore, Launcher, PipelineRun
from tfx_serving_ext.client.client import ServingClient
from tfx_serving_ext.publish.volume import list_versions
from tfx_serving_ext.server import ModelServer, ServerOptions

IMAGE = "registry.test/tfx-serving-ext-penguin-tfx:1"
MODEL_RESOLVER = "latest_blessed_model_resolver-model-resolver"
# Tiny: ~100 parameters, 300 steps of 20 rows take seconds; what takes time is each task's process.
FAST = {
    "train_steps": 300,
    "canary_requests": 20,
    # The p99 of 20 requests on a shared 2-core machine is one scheduling hiccup; errors and
    # agreement still count (as in test_penguin_tfx_pipeline.py).
    "canary_thresholds": {"max_p99_ratio": None},
}


def compile_job(tmp_path: Path, name: str, **pipeline_args) -> Path:
    return compile_pipeline(
        tmp_path / f"{name}.json",
        image=IMAGE,
        pipeline_root=str(tmp_path / "root"),
        serving_volume=str(tmp_path / "serving"),
        **FAST,
        **pipeline_args,
    )


def assert_every_task_succeeded(job: Path, run: PipelineRun) -> None:
    """Every task of the compiled DAG ran; every container task wrote its executor output."""
    spec = json.loads(job.read_text())["pipelineSpec"]
    assert sorted(run.tasks) == sorted(spec["root"]["dag"]["tasks"])
    for task in run.tasks.values():
        if task.kind == "container":
            assert (Path(task.log).parent / EXECUTOR_OUTPUT_FILE).is_file(), task.name


def predict_version(client: ServingClient, features: dict[str, float]) -> tuple[int, list[float]]:
    """Returns (version, probabilities) the server answers for one tf.Example."""
    import tensorflow as tf

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                key: tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                for key, value in features.items()
            }
        )
    )
    result = client.predict(penguin_tfx.MODEL_NAME, {"examples": [example.SerializeToString()]})
    return result.version, [float(p) for p in result.outputs["probabilities"][0]]


# An Adelie penguin from the CSV (the model sees the raw measurements).
ADELIE = {
    "culmen_length_mm": 39.1,
    "culmen_depth_mm": 18.7,
    "flipper_length_mm": 181.0,
    "body_mass_g": 3750.0,
}


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kubeflow_v2_compile_runs_pushes_and_hot_swaps(tmp_path):
    serving = tmp_path / "serving" / penguin_tfx.MODEL_NAME
    store = ArtifactStore(tmp_path / "store" / "artifacts.json")
    timings: dict[str, float] = {}

    job_1 = compile_job(tmp_path, "run-1", seed=0)
    spec = json.loads(job_1.read_text())["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(name for name, e in executors.items() if "resolver" in e) == [
        "latest_blessed_model_resolver-model-blessing-resolver_executor",
        "latest_blessed_model_resolver-model-resolver_executor",
    ]
    assert executors["Trainer_executor"]["container"]["image"] == IMAGE

    started = time.monotonic()
    run_1 = Launcher(job_1, store, max_parallel_tasks=2).run("penguin-tfx-run-1")
    timings["run 1"] = time.monotonic() - started
    assert_every_task_succeeded(job_1, run_1)
    assert run_1.output(MODEL_RESOLVER, "model") is None  # first run: nothing blessed yet
    model_1 = run_1.output("Trainer", "model")
    for blessing in ("Evaluator", "SignatureValidator", "AllBlessed"):
        assert run_1.output(blessing, "blessing")["metadata"]["blessed"] == 1, blessing
    # Named as Vertex names it, so that the next run's compiled resolver finds the model.
    assert (
        run_1.output("AllBlessed", "blessing")["metadata"]["current_model_id"] == (model_1["name"])
    )
    pushed = run_1.output("ServingPusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1 and pushed["pushed_version"] == "1"
    assert sorted(list_versions(serving)) == [1]
    assert (serving / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()

    options = ServerOptions(
        model_name=penguin_tfx.MODEL_NAME,
        model_base_path=str(serving),
        file_system_poll_wait_seconds=0.2,
    )
    with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
        assert client.wait_until_available(penguin_tfx.MODEL_NAME, timeout=120) == 1
        version, probabilities = predict_version(client, ADELIE)
        assert version == 1 and len(probabilities) == 3
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-3)

        job_2 = compile_job(tmp_path, "run-2", seed=1, server_address=server.grpc_address)
        started = time.monotonic()
        run_2 = Launcher(job_2, store, max_parallel_tasks=2).run("penguin-tfx-run-2")
        timings["run 2"] = time.monotonic() - started
        assert_every_task_succeeded(job_2, run_2)
        # The compiled LatestBlessedModelStrategy resolved run 1's model as the baseline.
        assert run_2.output(MODEL_RESOLVER, "model")["name"] == model_1["name"]
        evaluator_2 = run_2.output("Evaluator", "blessing")["metadata"]
        assert evaluator_2["blessed"] == 1
        assert evaluator_2["baseline_model"] == model_1["uri"]
        canary_2 = run_2.output("ServingCanary", "blessing")
        assert canary_2["metadata"]["blessed"] == 1
        report = json.loads((Path(canary_2["uri"]) / "report.json").read_text())
        assert report["latency_ms"]["baseline"]  # run 1's model was served and measured
        pushed = run_2.output("ServingPusher", "pushed_model")["metadata"]
        assert pushed["pushed"] == 1 and pushed["pushed_version"] == "2"
        assert pushed["verification"] == "available"  # the pusher saw the server load it
        assert sorted(list_versions(serving)) == [1, 2]
        assert client.wait_until_available(penguin_tfx.MODEL_NAME, version=2, timeout=120) == 2
        assert predict_version(client, ADELIE)[0] == 2

    for run in (run_1, run_2):
        for task in run.tasks.values():
            timings[f"{run.job_id[-5:]} {task.name}"] = task.seconds
    print(json.dumps({key: round(value, 1) for key, value in timings.items()}, indent=1))
