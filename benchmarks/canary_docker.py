"""Benchmark: stock TFX InfraValidator vs ServingCanary, both on TF Serving in Docker.

In one run, on the same TF Serving image (the tests' stand-in, or TF_SERVING_IMAGE), the same
penguin model and the same examples, each component's executor `Do` is timed on a private
Docker engine (tests/containers: dockerd in a network namespace of its own; the benchmark runs
inside that namespace, where the containers' published ports are):
  - stock: tfx.components.infra_validator's Executor with its LocalDockerRunner (the engine
           given as LocalDockerConfig.client_base_url), LOAD_AND_QUERY with `--iv-examples`
           requests;
  - ours:  ServingCanary's executor on the Docker backend, serving the candidate and a baseline
           (the same model) in one container and comparing them over `--canary-requests`
           requests each (concurrency 4), report and plots included.
Each wall time is split into: container start (`Do` entered -> Docker reports the container
running), model AVAILABLE (-> the server reports the model AVAILABLE; TF Serving's start-up
included), traffic (-> the last request answered), stop (-> the container stopped) and the
rest (reading examples, building requests, copying the model, writing the report). Runs
alternate which goes first; the table shows the median of `--repeats`. Target: ours <= 1.3x
stock. Needs root (network namespaces) and Debian's docker.io.

    .venv/bin/python benchmarks/canary_docker.py [--repeats 3] [--canary-requests 200]

Prints a table and writes benchmarks/results/canary_docker.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).resolve().parent / "results" / "canary_docker.json"
MODEL = "penguin"
PHASES = ("container_start_s", "model_available_s", "traffic_s", "stop_s", "rest_s")


class PhaseClock:
    """Notes when named moments happen (time.monotonic()); the first note of a name wins,
    except `last_*` names, which keep the latest."""

    def __init__(self) -> None:
        self.moments: dict[str, float] = {}

    def note(self, name: str, when: float | None = None) -> None:
        when = time.monotonic() if when is None else when
        if name.startswith("last_") or name not in self.moments:
            self.moments[name] = when


@contextlib.contextmanager
def patched(owner, name: str, before: str | None, after: str | None, clock: PhaseClock, seen=None):
    """Wraps `owner.name` so that calling it notes `before` and returning notes `after`
    (and appends its first argument, `self` for a method, to the list `seen`)."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if seen is not None:
            seen.append(args[0])
        if before:
            clock.note(before)
        result = original(*args, **kwargs)
        if after:
            clock.note(after)
        return result

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


def split(clock: PhaseClock, wall: float, running_at: float) -> dict:
    """Returns the wall time cut at container running, AVAILABLE, traffic end, stop."""
    m = clock.moments
    start, available = m["start"], m["last_available"]
    traffic_end, stopped = m["last_traffic_end"], m["stopped"]
    return {
        "wall_s": round(wall, 3),
        "container_start_s": round(running_at - start, 3),
        "model_available_s": round(available - running_at, 3),
        "traffic_s": round(traffic_end - available, 3),
        "stop_s": round(stopped - traffic_end, 3),
        "rest_s": round(wall - (stopped - start), 3),
    }


def artifacts(model_dir: Path, examples_dir: Path, out: Path, output_key: str):
    """Returns (input_dict, output_dict) for a validator of `model_dir` with `examples_dir`."""
    from tfx.types import standard_artifacts

    model = standard_artifacts.Model()
    model.uri = str(model_dir)
    examples = standard_artifacts.Examples()
    examples.uri = str(examples_dir)
    examples.split_names = '["train", "eval"]'
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(out / output_key)
    Path(blessing.uri).mkdir(parents=True, exist_ok=True)
    return {"model": [model], "examples": [examples]}, {"blessing": [blessing]}


def write_examples(records: list[bytes], examples_dir: Path) -> None:
    """Writes `records` as both splits of an Examples artifact (uncompressed TFRecords)."""
    import tensorflow as tf

    for split_name in ("train", "eval"):
        directory = examples_dir / f"Split-{split_name}"
        directory.mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(directory / "data_tfrecord-00000-of-00001")) as writer:
            for record in records:
                writer.write(record)


def serving_spec_json(image_repository: str, image_tag: str, docker_host: str) -> str:
    from google.protobuf import json_format
    from tfx.proto import infra_validator_pb2 as iv

    spec = iv.ServingSpec(
        model_name=MODEL,
        tensorflow_serving=iv.TensorFlowServing(image_name=image_repository, tags=[image_tag]),
        local_docker=iv.LocalDockerConfig(client_base_url=docker_host),
    )
    return json_format.MessageToJson(spec)


def run_infra_validator(work: Path, specs: dict, model_dir: Path, examples_dir: Path) -> dict:
    """Returns the stock InfraValidator's blessing and phase split."""
    from tfx.components.infra_validator import executor
    from tfx.components.infra_validator.model_server_clients import base_client
    from tfx.components.infra_validator.model_server_runners import local_docker_runner
    from tfx.dsl.components.base import base_executor

    runner = local_docker_runner.LocalDockerRunner
    clock = PhaseClock()
    inputs, outputs = artifacts(model_dir, examples_dir, work, "infra_blessing")
    properties = {
        "serving_spec": specs["serving"],
        "validation_spec": specs["validation"],
        "request_spec": json.dumps(
            {"tensorflow_serving": {}, "num_examples": specs["iv_examples"]}
        ),
    }
    context = base_executor.BaseExecutor.Context(tmp_dir=str(work / "iv_tmp"), unique_id="iv")
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(runner, "Start", "start", None, clock))
        stack.enter_context(patched(runner, "WaitUntilRunning", None, "running", clock))
        client = base_client.BaseModelServerClient
        stack.enter_context(patched(client, "WaitUntilModelLoaded", None, "last_available", clock))
        stack.enter_context(patched(client, "SendRequests", None, "last_traffic_end", clock))
        stack.enter_context(patched(runner, "Stop", None, "stopped", clock))
        began = time.monotonic()
        executor.Executor(context).Do(inputs, outputs, properties)
        wall = time.monotonic() - began
    blessed = (Path(outputs["blessing"][0].uri) / "INFRA_BLESSED").exists()
    return {"blessed": blessed, **split(clock, wall, clock.moments["running"])}


def run_serving_canary(work: Path, specs: dict, model_dir: Path, examples_dir: Path) -> dict:
    """Returns ServingCanary's blessing, phase split and its report's traffic figures."""
    from tfx.dsl.components.base import base_executor
    from tfx.types import standard_artifacts

    from tfx_serving_ext.canary import measure
    from tfx_serving_ext.canary.backends import docker as docker_backend
    from tfx_serving_ext.client import client as serving_client
    from tfx_serving_ext.components.serving_canary import executor

    backend = docker_backend.DockerBackend
    clock = PhaseClock()
    inputs, outputs = artifacts(model_dir, examples_dir, work, "canary_blessing")
    baseline = standard_artifacts.Model()
    baseline.uri = str(model_dir)
    inputs["baseline"] = [baseline]
    properties = {
        "serving_spec": specs["serving"],
        "validation_spec": specs["validation"],
        "canary_config": json.dumps({"num_requests": specs["canary_requests"]}),
    }
    context = base_executor.BaseExecutor.Context(tmp_dir=str(work / "canary_tmp"), unique_id="c")
    backends: list = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(backend, "start", "start", None, clock, seen=backends))
        client = serving_client.ServingClient
        stack.enter_context(patched(client, "wait_until_available", None, "last_available", clock))
        stack.enter_context(patched(measure, "drive_load", None, "last_traffic_end", clock))
        stack.enter_context(patched(backend, "stop", None, "stopped", clock))
        began = time.monotonic()
        executor.Executor(context).Do(inputs, outputs, properties)
        wall = time.monotonic() - began
    running_at = clock.moments["start"] + backends[-1].timings()["container_start_seconds"]
    report = json.loads((Path(outputs["blessing"][0].uri) / "report.json").read_text())
    blessed = (Path(outputs["blessing"][0].uri) / "INFRA_BLESSED").exists()
    return {
        "blessed": blessed,
        **split(clock, wall, running_at),
        "sends": report["traffic"]["sends"],
        "server_answers_s": backends[-1].timings().get("server_start_seconds"),
    }


def inside(args: argparse.Namespace) -> dict:
    """Runs both validators `args.repeats` times (in the engine's namespace); returns results."""
    from tfx.proto import infra_validator_pb2 as iv  # noqa: F401 - TFX's protos before TF logs

    from tests.support.penguin import penguin_examples, train_penguin_model

    work = Path(tempfile.mkdtemp(prefix="canary-docker-bench-"))
    # The Trainer's layout (<uri>/Format-Serving), which both executors resolve.
    model_dir = work / "model"
    train_penguin_model(model_dir / "Format-Serving", epochs=5, seed=0)
    examples_dir = work / "examples"
    write_examples([e.SerializeToString() for e in penguin_examples()[:200]], examples_dir)
    specs = {
        "serving": serving_spec_json(args.image_repository, args.image_tag, args.docker_host),
        "validation": json.dumps({"max_loading_time_seconds": 180, "num_tries": 1}),
        "iv_examples": args.iv_examples,
        "canary_requests": args.canary_requests,
    }
    runs: dict[str, list[dict]] = {"infra_validator": [], "serving_canary": []}
    for repeat in range(args.repeats):
        order = ["infra_validator", "serving_canary"]
        if repeat % 2:
            order.reverse()
        for name in order:
            run = run_infra_validator if name == "infra_validator" else run_serving_canary
            result = run(work / f"{name}-{repeat}", specs, model_dir, examples_dir)
            runs[name].append(result)
            print(f"  {name} run {repeat + 1}: {result['wall_s']:.2f} s", flush=True)
    return runs


def median_run(runs: list[dict]) -> dict:
    """Returns the run with the median wall time (one whole run: its phases add up)."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    return ordered[(len(ordered) - 1) // 2]


def table_lines(result: dict) -> list[str]:
    stock, ours = result["infra_validator"], result["serving_canary"]
    lines = [
        f"{'seconds':<14} {'wall':>7} {'container':>9} {'AVAILABLE':>9} {'traffic':>8} "
        f"{'stop':>6} {'rest':>6} blessed",
    ]
    for name, row in (("InfraValidator", stock), ("ServingCanary", ours)):
        lines.append(
            f"{name:<14} {row['wall_s']:>7.2f} {row['container_start_s']:>9.2f} "
            f"{row['model_available_s']:>9.2f} {row['traffic_s']:>8.2f} {row['stop_s']:>6.2f} "
            f"{row['rest_s']:>6.2f} {row['blessed']}"
        )
    lines.append(
        f"ratio ServingCanary / InfraValidator: {result['ratio_wall']:.2f}x "
        f"(target <= {result['target_ratio']}x)"
    )
    return lines


def outside(args: argparse.Namespace) -> int:
    """Starts the private engine and the image, re-runs this file inside its namespace."""
    from tests.containers.engine import DockerEngine
    from tests.containers.standin_image import ensure_serving_image

    began = time.monotonic()
    engine = DockerEngine.start()
    try:
        image = ensure_serving_image(engine)
        with tempfile.TemporaryDirectory(prefix="canary-docker-result-") as tmp:
            result_path = Path(tmp) / "runs.json"
            argv = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--inside",
                str(result_path),
                f"--repeats={args.repeats}",
                f"--canary-requests={args.canary_requests}",
                f"--iv-examples={args.iv_examples}",
                f"--image-repository={image.repository}",
                f"--image-tag={image.tag}",
                f"--docker-host={engine.host}",
            ]
            engine.run_in_netns(argv, timeout=3600, capture_output=False, cwd=ROOT)
            runs = json.loads(result_path.read_text())
    finally:
        engine.stop()
    stock, ours = median_run(runs["infra_validator"]), median_run(runs["serving_canary"])
    result = {
        "model": f"{MODEL} (serving_default, serialized tf.Example)",
        "image": image.reference + (" (stand-in)" if image.standin else ""),
        "repeats": args.repeats,
        "iv_examples": args.iv_examples,
        "canary_requests": args.canary_requests,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "infra_validator": stock,
        "serving_canary": ours,
        "ratio_wall": round(ours["wall_s"] / stock["wall_s"], 2),
        "target_ratio": 1.3,
        "wall_s_of_each_run": {
            name: [r["wall_s"] for r in name_runs] for name, name_runs in runs.items()
        },
        "benchmark_seconds": round(time.monotonic() - began, 1),
    }
    for line in table_lines(result):
        print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--canary-requests", type=int, default=200)
    parser.add_argument("--iv-examples", type=int, default=10, help="InfraValidator requests")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--image-repository", help=argparse.SUPPRESS)
    parser.add_argument("--image-tag", help=argparse.SUPPRESS)
    parser.add_argument("--docker-host", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        import logging

        logging.basicConfig(level=logging.WARNING)
        runs = inside(args)
        Path(args.inside).write_text(json.dumps(runs))
        return 0
    return outside(args)


if __name__ == "__main__":
    sys.exit(main())
