"""The runner's compiles for each platform, and the launcher's honesty: what it refuses, how it
builds parameters per schema version, and how it answers the compiled Vertex resolver."""

from __future__ import annotations

import json

import pytest

from tests.kfp.launcher import (
    ArtifactStore,
    Launcher,
    PipelineRun,
    TaskRun,
    UnsupportedSpec,
    _parameters,
    topological_order,
)

IMAGE = "registry.test/tfx-serving-ext-pipeline:1"


def _compile(tmp_path, name="job.json", **kwargs):
    from pipelines.penguin.kubeflow_v2_runner import compile_pipeline

    return compile_pipeline(
        tmp_path / name, image=IMAGE, pipeline_root=str(tmp_path / "root"), **kwargs
    )


def _spec(job):
    return json.loads(job.read_text())["pipelineSpec"]


def _constant(task, key):
    return task["inputs"]["parameters"][key]["runtimeValue"]["constant"]


def test_open_source_kfp_compile_has_no_resolver_and_serves_the_canary_in_a_pod(tmp_path):
    spec = _spec(_compile(tmp_path, platform="kfp"))
    assert spec["schemaVersion"] == "2.1.0"
    executors = spec["deploymentSpec"]["executors"]
    assert [name for name, e in executors.items() if "resolver" in e] == []
    assert set(executors) == {
        f"{c}_executor"
        for c in (
            "CsvExampleGen",
            "PenguinTrainer",
            "SignatureValidator",
            "WarmupRequestWriter",
            "ServingCanary",
            "ServingPusher",
        )
    }
    tasks = spec["root"]["dag"]["tasks"]
    canary = tasks["ServingCanary"]
    assert json.loads(_constant(canary, "canary_config"))["backend"] == "kubernetes"
    assert "kubernetes" in json.loads(_constant(canary, "serving_spec"))
    for task in ("SignatureValidator", "ServingCanary"):
        serving_baseline = json.loads(_constant(tasks[task], "serving_baseline"))
        assert serving_baseline["base_directory"] == "/serving/penguin"
        assert "baseline" not in tasks[task]["inputs"]["artifacts"]
        assert "baseline_model" not in tasks[task]["inputs"]["artifacts"]


def test_vertex_compile_serves_the_canary_in_process(tmp_path):
    spec = _spec(_compile(tmp_path, platform="vertex", server_address="tf-serving:8500"))
    tasks = spec["root"]["dag"]["tasks"]
    canary = tasks["ServingCanary"]
    assert json.loads(_constant(canary, "canary_config"))["backend"] == "embedded"
    assert "kubernetes" not in json.loads(_constant(canary, "serving_spec"))
    baseline = json.loads(_constant(tasks["SignatureValidator"], "serving_baseline"))
    assert baseline["server_address"] == "tf-serving:8500"
    container = spec["deploymentSpec"]["executors"]["ServingCanary_executor"]["container"]
    assert container["image"] == IMAGE


def test_runner_refuses_what_the_platform_cannot_run(tmp_path):
    from pipelines.penguin.kubeflow_v2_runner import main

    with pytest.raises(ValueError, match="resolver executors"):
        _compile(tmp_path, platform="kfp", baseline="latest_blessed")
    with pytest.raises(ValueError, match="no Kubernetes API"):
        _compile(tmp_path, platform="vertex", canary_backend="kubernetes")
    with pytest.raises(SystemExit):
        main(["--platform", "kfp", "--baseline", "latest_blessed", "--output", str(tmp_path / "x")])


def test_vertex_resolver_finds_the_model_the_validator_blessed(tmp_path):
    """The compiled LatestBlessedModelStrategy, answered from the store the way Vertex would:
    the blessing's `current_model_id` (the model's runtime name) must name the model."""
    job = _compile(tmp_path, platform="vertex", baseline="latest_blessed")
    store = ArtifactStore(tmp_path / "store.json")
    launcher = Launcher(job, store)
    model_type = {"instanceSchema": "title: tfx.Model\ntype: object\n"}
    blessing_type = {"instanceSchema": "title: tfx.ModelBlessing\ntype: object\n"}
    old, new = store.new_name(), store.new_name()
    for name in (old, new):
        store.record(
            {"name": name, "type": model_type, "uri": f"/m/{name[-1]}", "metadata": {}}, "T"
        )
    store.record(
        {
            "name": store.new_name(),
            "type": blessing_type,
            "uri": "/b/1",
            "metadata": {"blessed": 1.0, "current_model_id": old},
        },
        "SignatureValidator",
    )
    store.record(
        {
            "name": store.new_name(),
            "type": blessing_type,
            "uri": "/b/2",
            "metadata": {"blessed": 0.0, "current_model_id": new},
        },
        "SignatureValidator",
    )
    resolvers = [n for n in topological_order(launcher.tasks) if n.startswith("latest_blessed")]
    assert len(resolvers) == 2
    run = PipelineRun("run")
    for name in resolvers:
        launcher.run_task(name, run)
    assert run.output(resolvers[-1], "model")["name"] == old


def test_launcher_refuses_placeholders_and_executors_it_does_not_implement(tmp_path):
    job = _compile(tmp_path, platform="kfp")
    document = json.loads(job.read_text())
    spec = document["pipelineSpec"]
    check = spec["deploymentSpec"]["executors"]["CsvExampleGen_executor"]["container"]
    check["lifecycle"]["preCacheCheck"]["args"].append("{{$.inputs.parameters['input_base']}}")
    job.write_text(json.dumps(document))
    with pytest.raises(UnsupportedSpec, match="placeholders not implemented"):
        Launcher(job, ArtifactStore(tmp_path / "s.json")).run("run")

    document = json.loads(job.read_text())
    document["pipelineSpec"]["deploymentSpec"]["executors"]["CsvExampleGen_executor"] = {
        "importer": {"artifactUri": {"constant": "gs://x"}}
    }
    job.write_text(json.dumps(document))
    with pytest.raises(UnsupportedSpec, match="executor kind"):
        Launcher(job, ArtifactStore(tmp_path / "s.json")).run("run")

    document["pipelineSpec"]["root"]["dag"]["tasks"]["PenguinTrainer"]["triggerPolicy"] = {
        "condition": "x"
    }
    document["pipelineSpec"]["schemaVersion"] = "2.2.0"
    job.write_text(json.dumps(document))
    with pytest.raises(UnsupportedSpec, match="schema version"):
        Launcher(job, ArtifactStore(tmp_path / "s.json"))
    document["pipelineSpec"]["schemaVersion"] = "2.1.0"
    job.write_text(json.dumps(document))
    launcher = Launcher(job, ArtifactStore(tmp_path / "s.json"))
    run = PipelineRun("run")
    run.tasks["CsvExampleGen"] = TaskRun("CsvExampleGen", "container", {}, {"examples": []}, 0)
    with pytest.raises(UnsupportedSpec, match="triggerPolicy"):
        launcher.run_task("PenguinTrainer", run)


def test_parameters_follow_the_schema_version():
    component = {"inputDefinitions": {"parameters": {"n": {"parameterType": "NUMBER_INTEGER"}}}}
    task_21 = {"inputs": {"parameters": {"n": {"runtimeValue": {"constant": 3.0}}}}}
    assert _parameters("2.1.0", task_21, component) == {"parameterValues": {"n": 3.0}}
    task_20 = {
        "inputs": {"parameters": {"n": {"runtimeValue": {"constantValue": {"intValue": 3}}}}}
    }
    assert _parameters("2.0.0", task_20, component) == {"parameters": {"n": {"intValue": 3}}}
    with pytest.raises(UnsupportedSpec, match="runtimeValue|constant"):
        _parameters("2.1.0", task_20, component)
    with pytest.raises(UnsupportedSpec, match="no value"):
        _parameters("2.1.0", {}, component)
