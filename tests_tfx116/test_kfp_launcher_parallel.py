"""The KFP launcher's concurrent mode (used by test_penguin_tfx_kubeflow_v2.py): independent tasks
overlap, a task waits for every upstream task, and a failure stops what has not started.

The tasks are real processes (a few lines of Python given as the container's command) on a
small hand-written PipelineJob; each records when it ran.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kfp.launcher import ArtifactStore, Launcher, TaskFailed

# argv[1]: the ExecutorInput; argv[2]: the task's name; argv[3]: the seconds to take;
# argv[4]: the file each task appends "name start end" to. Exit 3 when told to fail.
TASK_SCRIPT = """
import json, sys, time
executor_input = json.loads(sys.argv[1])
name, seconds, times = sys.argv[2:5]
started = time.time()
time.sleep(float(seconds))
if name == "fail":
    sys.exit(3)
with open(times, "a") as f:
    f.write(f"{name} {started} {time.time()}\\n")
with open(executor_input["outputs"]["outputFile"], "w") as f:
    json.dump({}, f)
"""
ARTIFACT = {"artifactType": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}}


def write_job(tmp_path: Path, behaviours: dict[str, str]) -> Path:
    """Writes a PipelineJob: tasks a and b, independent; c takes both of their outputs."""
    times = tmp_path / "times.txt"
    components, executors, tasks = {}, {}, {}
    for name in ("a", "b", "c"):
        inputs = ("a", "b") if name == "c" else ()
        components[f"comp-{name}"] = {
            "executorLabel": f"exec-{name}",
            "inputDefinitions": {"artifacts": {key: ARTIFACT for key in inputs}},
            "outputDefinitions": {"artifacts": {"out": ARTIFACT}},
        }
        executors[f"exec-{name}"] = {
            "container": {
                "image": "python:3.10",
                "command": ["python", "-c", TASK_SCRIPT],
                "args": ["{{$}}", behaviours.get(name, name), "1.5", str(times)],
            }
        }
        tasks[name] = {
            "taskInfo": {"name": name},
            "componentRef": {"name": f"comp-{name}"},
            "inputs": {
                "artifacts": {
                    key: {"taskOutputArtifact": {"producerTask": key, "outputArtifactKey": "out"}}
                    for key in inputs
                }
            },
        }
    job = {
        "displayName": "parallel",
        "pipelineSpec": {
            "pipelineInfo": {"name": "parallel"},
            "schemaVersion": "2.1.0",
            "sdkVersion": "test",
            "components": components,
            "deploymentSpec": {"executors": executors},
            "root": {"dag": {"tasks": tasks}},
        },
        "runtimeConfig": {"gcsOutputDirectory": str(tmp_path / "root")},
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def ran(tmp_path: Path) -> dict[str, tuple[float, float]]:
    times = tmp_path / "times.txt"
    lines = times.read_text().split("\n") if times.is_file() else []
    return {n: (float(s), float(e)) for n, s, e in (line.split() for line in lines if line)}


def test_independent_tasks_overlap_and_a_task_waits_for_its_upstream(tmp_path):
    launcher = Launcher(
        write_job(tmp_path, {}), ArtifactStore(tmp_path / "store.json"), max_parallel_tasks=2
    )
    run = launcher.run("run")
    times = ran(tmp_path)
    assert sorted(times) == sorted(run.tasks) == ["a", "b", "c"]
    (a_start, a_end), (b_start, b_end) = times["a"], times["b"]
    assert b_start < a_end and a_start < b_end  # a and b ran at the same time
    assert times["c"][0] >= max(a_end, b_end)
    # c was given what a and b produced, each under its own name.
    given = run.tasks["c"].executor_input["inputs"]["artifacts"]
    assert {given[k]["artifacts"][0]["name"] for k in "ab"} == {
        run.output(k, "out")["name"] for k in "ab"
    }
    assert len({run.output(k, "out")["name"] for k in "abc"}) == 3


def test_one_at_a_time_unless_asked(tmp_path):
    Launcher(write_job(tmp_path, {}), ArtifactStore(tmp_path / "store.json")).run("run")
    times = ran(tmp_path)
    assert times["b"][0] >= times["a"][1]


def test_a_failed_task_stops_its_downstream_and_is_raised(tmp_path):
    launcher = Launcher(
        write_job(tmp_path, {"b": "fail"}),
        ArtifactStore(tmp_path / "store.json"),
        max_parallel_tasks=2,
    )
    with pytest.raises(TaskFailed, match="task b exited with 3"):
        launcher.run("run")
    assert sorted(ran(tmp_path)) == ["a"]  # a finished; c never started
