"""The penguin pipeline under every runner: the tfx CLI (local engine) and KFP v2 compilation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from tfx_serving_ext.publish.volume import list_versions

REPO = Path(__file__).resolve().parents[2]
TFX_CLI = Path(sys.executable).with_name("tfx")


def test_kubeflow_v2_runner_compiles_the_whole_chain(tmp_path):
    from pipelines.penguin.kubeflow_v2_runner import compile_pipeline

    output = compile_pipeline(tmp_path / "penguin.json", image="registry.test/pipeline:1")
    spec = json.loads(output.read_text())["pipelineSpec"]
    executors = spec["deploymentSpec"]["executors"]
    for component in (
        "CsvExampleGen",
        "PenguinTrainer",
        "SignatureValidator",
        "WarmupRequestWriter",
        "ServingCanary",
        "ServingPusher",
    ):
        container = executors[f"{component}_executor"]["container"]
        assert container["image"] == "registry.test/pipeline:1"
    canary_args = executors["ServingCanary_executor"]["container"]["args"]
    assert "tfx_serving_ext.components.serving_canary.executor.Executor" in canary_args
    # Schema 2.1; the baseline is what serves now (no resolver node), the canary runs in-process
    # on Vertex (the default platform).
    assert spec["schemaVersion"] == "2.1.0"
    assert not [name for name, executor in executors.items() if "resolver" in executor]
    canary_task = spec["root"]["dag"]["tasks"]["ServingCanary"]
    parameters = canary_task["inputs"]["parameters"]
    serving_spec = json.loads(parameters["serving_spec"]["runtimeValue"]["constant"])
    assert serving_spec["tensorflow_serving"]["tags"] == ["2.19.1"]
    assert json.loads(parameters["canary_config"]["runtimeValue"]["constant"])["backend"] == (
        "embedded"
    )
    assert json.loads(parameters["serving_baseline"]["runtimeValue"]["constant"]) == {
        "base_directory": "/serving/penguin",
        "model_name": "penguin",
        "server_address": "",
        "server_protocol": "grpc",
        "timeout_seconds": 30.0,
    }


def test_cloud_run_variant_compiles_with_the_pusher_deploying_to_cloud_run(tmp_path):
    from pipelines.penguin.kubeflow_v2_runner import compile_pipeline

    cloud_run = {
        "image_repository": "europe-docker.pkg.dev/proj/models/penguin",
        "project": "proj",
        "region": "europe-west1",
        "service": "penguin",
        "model_name": "penguin",
        "traffic_percent": 10,
    }
    output = compile_pipeline(tmp_path / "penguin-cloud-run.json", cloud_run=cloud_run)
    pusher = json.loads(output.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]["ServingPusher"]
    parameters = pusher["inputs"]["parameters"]

    def constant(name):
        return parameters[name]["runtimeValue"]["constant"]

    assert constant("destination") == "cloud_run"
    pushed_config = json.loads(constant("push_destination"))
    assert pushed_config["service"] == "penguin"
    assert pushed_config["traffic_percent"] == 10


@pytest.mark.slow
def test_tfx_cli_creates_and_runs_the_pipeline(tmp_path):
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),  # the tfx CLI keeps its pipeline registry under $HOME
        "PENGUIN_HOME": str(tmp_path / "penguin"),
    }
    pipeline_path = REPO / "pipelines" / "penguin" / "local_runner.py"
    create = subprocess.run(
        [str(TFX_CLI), "pipeline", "create", "--engine=local", f"--pipeline_path={pipeline_path}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert create.returncode == 0, create.stderr[-3000:]
    assert 'Pipeline "penguin-serving" created successfully.' in create.stdout

    run = subprocess.run(
        [str(TFX_CLI), "run", "create", "--engine=local", "--pipeline_name=penguin-serving"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    versions = list_versions(tmp_path / "penguin" / "serving" / "penguin")
    assert sorted(versions) == [1]
    assert (versions[1] / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_pipeline_image_installs_what_the_tfx_base_image_lacks():
    """The Dockerfile's extra pip installs are the project's own pins (uv constraints)."""
    dockerfile = (REPO / "pipelines" / "penguin" / "Dockerfile").read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {
        re.split(r"==", pin, maxsplit=1)[0]: pin
        for pin in pyproject["tool"]["uv"]["constraint-dependencies"]
    }
    in_base_image = {
        "tfx",
        "tensorflow",
        "tensorflow-serving-api",
        "apache-beam",
        "ml-metadata",
        "docker",
    }
    for requirement in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=;\[ ]", requirement, maxsplit=1)[0]
        if name not in in_base_image:
            assert name in pins, f"{name} has no exact pin in [tool.uv] constraint-dependencies"
            assert f'"{pins[name]}"' in dockerfile, f"{pins[name]} missing from the Dockerfile"
