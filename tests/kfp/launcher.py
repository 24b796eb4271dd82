"""Executes a compiled KFP v2 PipelineJob JSON here, task by task, as the KFP v2 launcher would.

For each task of `root.dag`, in topological order (with `max_parallel_tasks` > 1, tasks whose
upstream tasks are done run concurrently, as KFP runs them):
- builds the ExecutorInput: input parameters per the spec's schema version (2.1:
  `parameterValues` from `runtimeValue.constant`; 2.0: `parameters` from
  `runtimeValue.constantValue`), input artifacts from the upstream tasks' outputs (name, type, URI,
  metadata), output artifacts with URIs under `<pipeline root>/<job id>/<task>/<key>`, and an
  `outputFile` (`executor_output.json` in the task's directory);
- container executors: substitutes the placeholders, runs `lifecycle.preCacheCheck` where
  present, then the container's command and args as a subprocess with this environment's python
  (the image is not used: the same entrypoint, TFX's `kubeflow_v2_run_executor`), and reads
  `executor_output.json` back into the outputs;
- resolver executors: answers the artifact queries from a small local artifact store (which
  outlives a run, like Vertex ML Metadata), after substituting their placeholders.

It refuses what it does not implement (other executor kinds, placeholders, input kinds, task
fields such as conditions or loops): a spec it cannot run fails loudly instead of half-running.
Artifacts are named the way Vertex names them (`projects/.../artifacts/N`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCHEMA_VERSIONS = ("2.0.0", "2.1.0")
EXECUTOR_OUTPUT_FILE = "executor_output.json"
ARTIFACT_NAME_PREFIX = "projects/local/locations/local/metadataStores/default/artifacts/"

_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")
_INPUT_METADATA = re.compile(
    r"\{\{\$\.inputs\.artifacts\['(?P<key>[^']+)'\]\.metadata\['(?P<field>[^']+)'\]\}\}"
)
_PIPELINE_SPEC_KEYS = {
    "components",
    "deploymentSpec",
    "pipelineInfo",
    "root",
    "schemaVersion",
    "sdkVersion",
}
_TASK_KEYS = {"componentRef", "dependentTasks", "inputs", "taskInfo", "cachingOptions"}
_COMPONENT_KEYS = {"executorLabel", "inputDefinitions", "outputDefinitions"}
_CONTAINER_KEYS = {"image", "command", "args", "lifecycle"}
_PYTHONS = ("python", "python3")


class UnsupportedSpec(Exception):
    """The spec uses something this launcher does not implement (so the test must fail)."""


class TaskFailed(Exception):
    """A task's process exited with an error, or wrote no executor output."""


# ---- the artifact store (what Vertex ML Metadata / KFP's MLMD keep between runs) ----------------


def schema_title(artifact_type: Mapping[str, Any]) -> str:
    """Returns the schema title of an ArtifactTypeSchema (schemaTitle or instanceSchema's title)."""
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    if "instanceSchema" in artifact_type:
        match = re.search(r"^title:\s*(\S+)", artifact_type["instanceSchema"], re.MULTILINE)
        if match:
            return match.group(1)
    raise UnsupportedSpec(f"artifact type without a title: {artifact_type}")


class ArtifactStore:
    """Artifacts every run produced, kept in one JSON file; answers KFP resolver filters."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.artifacts: list[dict[str, Any]] = (
            json.loads(self.path.read_text()) if self.path.is_file() else []
        )
        self._lock = threading.RLock()  # concurrent tasks reserve names and record outputs

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.artifacts, indent=1))

    def new_name(self) -> str:
        """Returns a fresh artifact resource name (reserved: the counter persists)."""
        with self._lock:
            counter_file = self.path.with_suffix(".counter")
            number = int(counter_file.read_text()) + 1 if counter_file.is_file() else 1
            counter_file.parent.mkdir(parents=True, exist_ok=True)
            counter_file.write_text(str(number))
            return f"{ARTIFACT_NAME_PREFIX}{number}"

    def record(self, artifact: dict[str, Any], producer: str) -> None:
        """Stores a produced runtime artifact (LIVE)."""
        with self._lock:
            self.artifacts.append({**artifact, "state": "LIVE", "producer": producer})
            self._save()

    def query(self, filter_text: str) -> list[dict[str, Any]]:
        """Returns the newest artifact matching a KFP resolver filter (or none).

        Implemented clauses, joined by AND: schema_title="T", state=LIVE, name="N",
        metadata.K.number_value=V, metadata.K.string_value="V".

        Raises:
            UnsupportedSpec: any other clause.
        """
        clauses = [_parse_clause(clause.strip()) for clause in filter_text.split(" AND ")]
        with self._lock:
            matches = [a for a in self.artifacts if all(_matches(a, c) for c in clauses)]
        return [_runtime_artifact(matches[-1])] if matches else []


_CLAUSES = {
    "schema_title": re.compile(r'schema_title="([^"]*)"'),
    "state": re.compile(r"state=([A-Z_]+)"),
    "name": re.compile(r'name="([^"]*)"'),
    "number": re.compile(r"metadata\.(\w+)\.number_value=(-?[0-9.]+)"),
    "string": re.compile(r'metadata\.(\w+)\.string_value="([^"]*)"'),
}


def _parse_clause(clause: str) -> tuple[str, tuple[str, ...]]:
    for kind, pattern in _CLAUSES.items():
        match = pattern.fullmatch(clause)
        if match:
            return kind, match.groups()
    raise UnsupportedSpec(f"resolver filter clause not implemented: {clause!r}")


def _matches(artifact: Mapping[str, Any], clause: tuple[str, tuple[str, ...]]) -> bool:
    kind, args = clause
    if kind == "schema_title":
        return schema_title(artifact["type"]) == args[0]
    if kind == "state":
        return artifact["state"] == args[0]
    if kind == "name":
        return artifact.get("name") == args[0]
    value = artifact["metadata"].get(args[0])
    if kind == "number":
        return isinstance(value, int | float) and float(value) == float(args[1])
    return value == args[1]


def _runtime_artifact(stored: Mapping[str, Any]) -> dict[str, Any]:
    return {key: stored[key] for key in ("name", "type", "uri", "metadata") if key in stored}


# ---- one run of a PipelineJob ---------------------------------------------------------------


@dataclass
class TaskRun:
    """What one task did: its ExecutorInput, its outputs and how long it took."""

    name: str
    kind: str  # "container" or "resolver"
    executor_input: dict[str, Any]
    outputs: dict[str, list[dict[str, Any]]]
    seconds: float
    log: Path | None = None


@dataclass
class PipelineRun:
    """The tasks of one run, in the order they ran."""

    job_id: str
    tasks: dict[str, TaskRun] = field(default_factory=dict)

    def output(self, task: str, key: str) -> dict[str, Any] | None:
        """Returns the single artifact `task` produced as `key` (None if it produced none)."""
        artifacts = self.tasks[task].outputs.get(key) or []
        return artifacts[0] if artifacts else None


def _check_keys(what: str, value: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise UnsupportedSpec(f"{what} uses {unknown}, which this launcher does not implement")


def _upstream_tasks(task: Mapping[str, Any]) -> set[str]:
    """Returns the names of the tasks `task` waits for (dependentTasks and artifact producers)."""
    deps = set(task.get("dependentTasks", []))
    for spec in task.get("inputs", {}).get("artifacts", {}).values():
        if "taskOutputArtifact" in spec:
            deps.add(spec["taskOutputArtifact"]["producerTask"])
    return deps


def topological_order(tasks: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Returns the task names so that every task comes after the tasks it depends on.

    Raises:
        UnsupportedSpec: a dependency on an unknown task, or a cycle.
    """
    depends: dict[str, set[str]] = {}
    for name, task in tasks.items():
        deps = _upstream_tasks(task)
        unknown = deps - set(tasks)
        if unknown:
            raise UnsupportedSpec(f"task {name} depends on unknown tasks {sorted(unknown)}")
        depends[name] = deps
    order: list[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and depends[n] <= set(order))
        if not ready:
            raise UnsupportedSpec(f"the DAG has a cycle among {sorted(set(tasks) - set(order))}")
        order.append(ready[0])
    return order


def _parameters(schema: str, task: Mapping[str, Any], component: Mapping[str, Any]) -> dict:
    """Returns the ExecutorInput's input parameters for `task`, per the schema version."""
    given = task.get("inputs", {}).get("parameters", {})
    definitions = component.get("inputDefinitions", {}).get("parameters", {})
    values: dict[str, Any] = {}
    for key, spec in given.items():
        _check_keys(f"parameter {key}", spec, {"runtimeValue"})
        runtime_value = spec["runtimeValue"]
        if schema == "2.1.0":
            _check_keys(f"parameter {key}", runtime_value, {"constant"})
            values[key] = runtime_value["constant"]
        else:
            _check_keys(f"parameter {key}", runtime_value, {"constantValue"})
            values[key] = runtime_value["constantValue"]
    for key, definition in definitions.items():
        if key in values:
            continue
        if "defaultValue" in definition:
            values[key] = definition["defaultValue"]
        elif not definition.get("isOptional"):
            raise UnsupportedSpec(f"parameter {key} has no value, no default and is not optional")
    unknown = set(values) - set(definitions)
    if unknown:
        raise UnsupportedSpec(f"parameters {sorted(unknown)} are not in the component's inputs")
    return {"parameterValues" if schema == "2.1.0" else "parameters": values} if values else {}


def _substitute(text: str, executor_input: Mapping[str, Any]) -> str:
    """Replaces `{{$}}` (the whole ExecutorInput as JSON); refuses any other placeholder."""
    text = text.replace("{{$}}", json.dumps(executor_input))
    leftover = _PLACEHOLDER.findall(text)
    if leftover:
        raise UnsupportedSpec(f"placeholders not implemented: {sorted(set(leftover))}")
    return text


def _substitute_filter(text: str, inputs: Mapping[str, list[dict[str, Any]]]) -> str:
    """Replaces `{{$.inputs.artifacts['K'].metadata['F']}}`; refuses any other placeholder."""

    def value(match: re.Match) -> str:
        artifacts = inputs.get(match.group("key"))
        if artifacts is None:
            raise UnsupportedSpec(f"filter reads input {match.group('key')!r}, which is not given")
        if not artifacts:
            return ""  # nothing resolved upstream: the query matches nothing
        found = artifacts[0].get("metadata", {}).get(match.group("field"), "")
        # Struct numbers come back as floats (1.0); a name or id must print as it was written.
        return str(int(found)) if isinstance(found, float) and found.is_integer() else str(found)

    text = _INPUT_METADATA.sub(value, text)
    leftover = _PLACEHOLDER.findall(text)
    if leftover:
        raise UnsupportedSpec(f"placeholders not implemented: {sorted(set(leftover))}")
    return text


class Launcher:
    """Runs a PipelineJob JSON here; the artifact store and pipeline root persist across runs."""

    def __init__(
        self,
        job_path: str | os.PathLike,
        store: ArtifactStore,
        *,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        task_timeout: float = 1800.0,
        max_parallel_tasks: int = 1,
    ):
        job = json.loads(Path(job_path).read_text())
        _check_keys(
            "the PipelineJob", job, {"displayName", "labels", "pipelineSpec", "runtimeConfig"}
        )
        self.spec = job["pipelineSpec"]
        _check_keys("the pipelineSpec", self.spec, _PIPELINE_SPEC_KEYS)
        self.schema = self.spec.get("schemaVersion")
        if self.schema not in SCHEMA_VERSIONS:
            raise UnsupportedSpec(
                f"schema version {self.schema!r} (implemented: {SCHEMA_VERSIONS})"
            )
        runtime_config = job.get("runtimeConfig", {})
        _check_keys("the runtimeConfig", runtime_config, {"gcsOutputDirectory"})
        self.pipeline_root = runtime_config.get("gcsOutputDirectory", "")
        if "://" in self.pipeline_root or not os.path.isabs(self.pipeline_root):
            raise UnsupportedSpec(
                f"pipeline root {self.pipeline_root!r}: this launcher writes artifacts to a local "
                "directory; compile with a local absolute --pipeline-root"
            )
        _check_keys("the root component", self.spec["root"], {"dag"})
        self.tasks = self.spec["root"]["dag"]["tasks"]
        _check_keys("the root DAG", self.spec["root"]["dag"], {"tasks"})
        self.store = store
        self.python = python
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), self.env.get("PYTHONPATH", "")) if p
        )
        self.task_timeout = task_timeout
        self.max_parallel_tasks = max_parallel_tasks

    def run(self, job_id: str) -> PipelineRun:
        """Runs every task once, each after its upstream tasks; returns what each produced.

        One at a time in topological order, or up to `max_parallel_tasks` at once: a task starts
        as soon as its upstream tasks are done. After a failure no task starts; the running ones
        finish, then the first failure is raised.

        Raises:
            UnsupportedSpec: the spec needs something not implemented here.
            TaskFailed: a task's process failed (its log's tail is in the message).
        """
        result = PipelineRun(job_id)
        order = topological_order(self.tasks)
        if self.max_parallel_tasks <= 1:
            for name in order:
                self.run_task(name, result)
            return result
        upstream = {name: _upstream_tasks(self.tasks[name]) for name in order}
        running: dict[Any, str] = {}  # future -> task name
        finished: set[str] = set()  # only this thread reads and writes it
        failure: BaseException | None = None
        with ThreadPoolExecutor(self.max_parallel_tasks) as pool:
            while True:
                while failure is None and len(running) < self.max_parallel_tasks:
                    started = finished | set(running.values())
                    ready = [n for n in order if n not in started and upstream[n] <= finished]
                    if not ready:
                        break
                    running[pool.submit(self.run_task, ready[0], result)] = ready[0]
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    if future.exception() is None:
                        finished.add(name)
                    elif failure is None:
                        failure = future.exception()
        if failure is not None:
            raise failure
        return result

    def run_task(self, name: str, result: PipelineRun) -> TaskRun:
        """Runs one task whose upstream tasks are in `result`; records and returns its run."""
        task = self.tasks[name]
        _check_keys(f"task {name}", task, _TASK_KEYS)
        component = self.spec["components"][task["componentRef"]["name"]]
        _check_keys(f"component of {name}", component, _COMPONENT_KEYS)
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        inputs = self._input_artifacts(name, task, component, result)
        if set(executor) == {"container"}:
            run = self._run_container(
                result.job_id, name, task, component, executor["container"], inputs
            )
        elif set(executor) == {"resolver"}:
            run = self._run_resolver(name, executor["resolver"], inputs)
        else:
            raise UnsupportedSpec(f"task {name}: executor kind {sorted(executor)}")
        result.tasks[name] = run
        return run

    def _input_artifacts(self, name, task, component, result: PipelineRun) -> dict[str, list]:
        inputs: dict[str, list[dict[str, Any]]] = {}
        definitions = component.get("inputDefinitions", {}).get("artifacts", {})
        for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
            if set(spec) != {"taskOutputArtifact"}:
                raise UnsupportedSpec(f"task {name}: input artifact {key} of kind {sorted(spec)}")
            if key not in definitions:
                raise UnsupportedSpec(f"task {name}: input artifact {key} is not declared")
            source = spec["taskOutputArtifact"]
            inputs[key] = list(
                result.tasks[source["producerTask"]].outputs.get(source["outputArtifactKey"], [])
            )
        missing = [k for k, d in definitions.items() if k not in inputs and not d.get("isOptional")]
        if missing:
            raise UnsupportedSpec(f"task {name}: required input artifacts {missing} not given")
        return inputs

    def _run_container(self, job_id, name, task, component, container, inputs) -> TaskRun:
        _check_keys(f"container of {name}", container, _CONTAINER_KEYS)
        outputs_def = component.get("outputDefinitions", {})
        _check_keys(f"outputs of {name}", outputs_def, {"artifacts"})
        task_root = Path(self.pipeline_root) / job_id / name
        task_root.mkdir(parents=True, exist_ok=True)
        executor_input: dict[str, Any] = {
            "inputs": {
                **_parameters(self.schema, task, component),
                **(
                    {"artifacts": {k: {"artifacts": v} for k, v in inputs.items()}}
                    if inputs
                    else {}
                ),
            },
            "outputs": {
                "artifacts": {
                    key: {
                        "artifacts": [
                            {
                                "name": self.store.new_name(),
                                "type": spec["artifactType"],
                                "uri": str(task_root / key),
                                "metadata": {},
                            }
                        ]
                    }
                    for key, spec in outputs_def.get("artifacts", {}).items()
                },
                "outputFile": str(task_root / EXECUTOR_OUTPUT_FILE),
            },
        }
        log_path = task_root / "log.txt"
        lifecycle = container.get("lifecycle", {})
        _check_keys(f"lifecycle of {name}", lifecycle, {"preCacheCheck"})
        processes = []  # every command line is built (and checked) before anything runs
        if "preCacheCheck" in lifecycle:
            check = lifecycle["preCacheCheck"]
            _check_keys(f"preCacheCheck of {name}", check, {"command", "args"})
            processes.append(
                self._argv(name, check["command"], check.get("args", []), executor_input)
            )
        processes.append(
            self._argv(name, container["command"], container.get("args", []), executor_input)
        )
        started = time.monotonic()
        for argv in processes:
            self._run_process(name, argv, log_path)
        output_file = task_root / EXECUTOR_OUTPUT_FILE
        if not output_file.is_file():
            raise TaskFailed(f"task {name} wrote no {output_file}")
        executor_output = json.loads(output_file.read_text())
        _check_keys(f"executor output of {name}", executor_output, {"artifacts", "parameterValues"})
        if executor_output.get("parameterValues"):
            raise UnsupportedSpec(f"task {name} returned output parameters")
        outputs: dict[str, list[dict[str, Any]]] = {}
        for key, provisioned in executor_input["outputs"]["artifacts"].items():
            artifact = dict(provisioned["artifacts"][0])
            written = executor_output.get("artifacts", {}).get(key, {}).get("artifacts", [])
            if written:
                artifact.update(
                    uri=written[0].get("uri", artifact["uri"]),
                    metadata=written[0].get("metadata", {}),
                )
            self.store.record(artifact, producer=name)
            outputs[key] = [artifact]
        return TaskRun(
            name, "container", executor_input, outputs, time.monotonic() - started, log_path
        )

    def _argv(self, name, command, args, executor_input) -> list[str]:
        if not command or command[0] not in _PYTHONS:
            raise UnsupportedSpec(
                f"task {name}: command {command[:3]} (implemented: a python entrypoint, run with "
                "this environment's python instead of the image's)"
            )
        return [self.python, *(_substitute(a, executor_input) for a in [*command[1:], *args])]

    def _run_process(self, name: str, argv: list[str], log_path: Path) -> None:
        with log_path.open("a") as log:
            log.write(f"$ {' '.join(argv[:3])} ...\n")
            log.flush()
            completed = subprocess.run(
                argv,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=self.task_timeout,
                check=False,
            )
        if completed.returncode != 0:
            tail = log_path.read_text()[-4000:]
            raise TaskFailed(f"task {name} exited with {completed.returncode}:\n{tail}")

    def _run_resolver(self, name, resolver, inputs) -> TaskRun:
        _check_keys(f"resolver of {name}", resolver, {"outputArtifactQueries"})
        started = time.monotonic()
        outputs = {}
        for key, query in resolver["outputArtifactQueries"].items():
            _check_keys(f"query {key} of {name}", query, {"filter"})
            outputs[key] = self.store.query(_substitute_filter(query["filter"], inputs))
        return TaskRun(name, "resolver", {"inputs": inputs}, outputs, time.monotonic() - started)
