"""Benchmark: from the trainer's output to the new version AVAILABLE on the server, by component.

In one run, on the penguin model and the same disk:
  - ours:  the penguin pipeline (pipelines/penguin/pipeline.py) under LocalDagRunner. A first
           run pushes version 1 (the baseline); then an embedded server polls the volume and each
           measured run (a retrained model) goes through SignatureValidator ->
           WarmupRequestWriter -> ServingCanary -> ServingPusher (which waits until the server
           reports the new version AVAILABLE).
  - stock: the same trained model (that run's Trainer output, brought in with an Importer) through
           stock TFX: InfraValidator (TF Serving in Docker; it needs a daemon) ->
           tfx.components.Pusher to a volume that a second embedded server polls.
With `--private-engine` (root, Debian's docker.io) the benchmark starts the tests' Docker engine
(tests/containers: dockerd in a network namespace of its own, the TF Serving stand-in image or
TF_SERVING_IMAGE) and runs inside that namespace, so InfraValidator has a daemon; without it,
InfraValidator runs only where DOCKER_HOST or the default socket answers.
For each chain: every component's execution time (from MLMD), the orchestration time between
them, and from the trainer's output (its execution's end) to the moment a watcher polling the
server's model status (every 20 ms) first sees the new version AVAILABLE; the run with the
median total of `--repeats` retrained models. Ratios are ours/stock: of the totals, and of
push -> AVAILABLE alone (our ServingPusher, which copies, fsyncs, renames and waits for
AVAILABLE, vs the stock Pusher's copy plus the time until the server picks it up).
Both servers poll their volume every `--poll` seconds (TF Serving's default is 1 s).

    .venv/bin/python benchmarks/pipeline.py [--repeats 3] [--canary-requests 200] [--private-engine]

Prints a table and writes benchmarks/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).parent / "results" / "pipeline.json"
MODEL = "penguin"
STOCK_PIPELINE = "penguin-stock-chain"


class AvailabilityWatcher(threading.Thread):
    """Records when each version of MODEL is first reported AVAILABLE (time.time())."""

    def __init__(self, address: str, interval: float = 0.02):
        super().__init__(daemon=True)
        self.address, self.interval = address, interval
        self.first_available: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        from tfx_serving_ext.client.client import ServingClient, ServingError

        with ServingClient(self.address, timeout=5.0) as client:
            while not self._halt.is_set():
                try:
                    statuses = client.model_status(MODEL)
                except ServingError:
                    statuses = []
                now = time.time()
                for status in statuses:
                    if status.state == "AVAILABLE":
                        self.first_available.setdefault(status.version, now)
                time.sleep(self.interval)

    def wait_for(self, version_above: int, timeout: float) -> tuple[int, float]:
        """Returns (version, when) of the first version above `version_above` seen AVAILABLE."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            newer = {v: t for v, t in self.first_available.items() if v > version_above}
            if newer:
                version = min(newer)
                return version, newer[version]
            time.sleep(0.02)
        raise TimeoutError(f"no version above {version_above} AVAILABLE within {timeout} s")

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def executions_of_last_run(metadata_path: Path) -> list[dict]:
    """Returns [{node, start, end, seconds}] of the newest pipeline run in MLMD, in start order."""
    from ml_metadata.metadata_store import metadata_store
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(str(metadata_path))
    )
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)
    in_run = {e.id for e in store.get_executions_by_context(run.id)}
    rows = []
    for node in store.get_contexts_by_type("node"):
        for execution in store.get_executions_by_context(node.id):
            if execution.id in in_run:
                start = execution.create_time_since_epoch / 1000
                end = execution.last_update_time_since_epoch / 1000
                rows.append(
                    {
                        "node": node.name.split(".", 1)[1],
                        "start": start,
                        "end": end,
                        "seconds": end - start,
                    }
                )
    return sorted(rows, key=lambda r: r["start"])


def latest_model_uri(pipeline_root: Path) -> Path:
    models = list((pipeline_root / "PenguinTrainer" / "model").iterdir())
    return max(models, key=lambda p: int(p.name))


def docker_daemon() -> str | None:
    """Returns the Docker daemon's version if one answers, else None."""
    try:
        import docker

        return docker.from_env(timeout=3).version().get("Version", "unknown")
    except Exception:
        return None


def start_server(base: Path, poll: float):
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    server = ModelServer(
        ServerOptions(
            model_name=MODEL, model_base_path=str(base), file_system_poll_wait_seconds=poll
        )
    )
    server.start()
    with ServingClient(server.grpc_address) as client:
        version = client.wait_until_available(MODEL, timeout=300)
    watcher = AvailabilityWatcher(server.grpc_address)
    watcher.start()
    return server, watcher, version


def run_ours(work: Path, server_address: str, seed: int, canary_requests: int, epochs: int):
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines.penguin import DATA_DIR
    from pipelines.penguin.pipeline import create_pipeline

    LocalDagRunner().run(
        create_pipeline(
            pipeline_root=str(work / "pipeline_root"),
            data_root=str(DATA_DIR),
            serving_model_dir=str(work / "serving" / MODEL),
            metadata_path=str(work / "metadata.sqlite"),
            seed=seed,
            epochs=epochs,
            canary_requests=canary_requests,
            server_address=server_address,
        )
    )


def run_stock(
    work: Path, model_uri: Path, examples_uri: Path | None, serving: Path, image: str = "latest"
) -> None:
    """Runs Importer(model) [-> InfraValidator] -> stock Pusher under LocalDagRunner."""
    from tfx.components import Pusher
    from tfx.dsl.components.common.importer import Importer
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts

    model = Importer(
        source_uri=str(model_uri), artifact_type=standard_artifacts.Model, reimport=True
    ).with_id("import_model")
    components = [model]
    infra_blessing = None
    if examples_uri is not None:  # a Docker daemon answered: InfraValidator can run
        from tfx.components import InfraValidator
        from tfx.proto import infra_validator_pb2 as iv

        repository, _, tag = image.rpartition(":")

        examples = Importer(
            source_uri=str(examples_uri),
            artifact_type=standard_artifacts.Examples,
            reimport=True,
            properties={"split_names": '["train", "eval"]'},
        ).with_id("import_examples")
        validator = InfraValidator(
            model=model.outputs["result"],
            examples=examples.outputs["result"],
            serving_spec=iv.ServingSpec(
                tensorflow_serving=iv.TensorFlowServing(image_name=repository or None, tags=[tag]),
                # LocalDockerRunner's client ignores DOCKER_HOST: pass it on explicitly.
                local_docker=iv.LocalDockerConfig(
                    client_base_url=os.environ.get("DOCKER_HOST", "")
                ),
            ),
            request_spec=iv.RequestSpec(
                tensorflow_serving=iv.TensorFlowServingRequestSpec(), num_examples=10
            ),
        )
        components += [examples, validator]
        infra_blessing = validator.outputs["blessing"]
    components.append(
        Pusher(
            model=model.outputs["result"],
            infra_blessing=infra_blessing,
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving))
            ),
        )
    )
    LocalDagRunner().run(
        pipeline.Pipeline(
            pipeline_name=STOCK_PIPELINE,
            pipeline_root=str(work / "pipeline_root"),
            components=components,
            metadata_connection_config=metadata.sqlite_metadata_connection_config(
                str(work / "metadata.sqlite")
            ),
            enable_cache=False,
        )
    )


def chain_summary(executions: list[dict], measured_from: float, available_at: float) -> dict:
    """Returns the component split of the span from `measured_from` to `available_at`."""
    # Importers stand in for upstream outputs (the trainer's model, the examples): not measured.
    inside = [
        e
        for e in executions
        if e["start"] >= measured_from - 1e-3 and not e["node"].startswith("import_")
    ]
    components = {e["node"]: e["seconds"] for e in inside}
    total = available_at - measured_from
    # Our pusher returns just after it sees AVAILABLE itself: clamp that overlap to 0.
    after = max(available_at - max(e["end"] for e in inside), 0.0)
    return {
        "components": components,
        "orchestration_s": total - sum(components.values()) - after,
        "after_last_component_s": after,
        "trainer_output_to_available_s": total,
    }


def median_chain(runs: list[dict]) -> dict:
    """Returns the run whose total is the median, rounded to ms.

    One whole run rather than per-step medians: medians taken step by step come from different
    runs and need not add up to the total.
    """
    ordered = sorted(runs, key=lambda r: r["trainer_output_to_available_s"])
    run = ordered[(len(ordered) - 1) // 2]
    summary = {"components": {node: round(t, 3) for node, t in run["components"].items()}}
    for key in ("orchestration_s", "after_last_component_s", "trainer_output_to_available_s"):
        summary[key] = round(run[key], 3)
    return summary


def run_in_private_engine(argv: list[str]) -> int:
    """Returns the exit code of this benchmark re-run inside the tests' private Docker engine."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from tests.containers.engine import DockerEngine
    from tests.containers.standin_image import ensure_serving_image

    engine = DockerEngine.start()
    try:
        image = ensure_serving_image(engine)
        inner = [a for a in argv if a != "--private-engine"]
        inner.append(f"--tf-serving-image={image.reference}")
        done = engine.run_in_netns(
            [sys.executable, str(Path(__file__).resolve()), *inner],
            timeout=3600,
            check=False,
            capture_output=False,
            cwd=root,
        )
        return done.returncode
    finally:
        engine.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll", type=float, default=1.0, help="server file system poll (s)")
    parser.add_argument("--repeats", type=int, default=3, help="measured runs of each chain")
    parser.add_argument("--canary-requests", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5, help="trainer epochs (not measured)")
    parser.add_argument(
        "--private-engine",
        action="store_true",
        help="run inside the tests' private Docker engine's namespace (InfraValidator runs)",
    )
    parser.add_argument("--tf-serving-image", default="latest", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.private_engine:
        sys.exit(run_in_private_engine(sys.argv[1:]))
    started = time.monotonic()
    docker_version = docker_daemon()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        ours, stock = tmp / "ours", tmp / "stock"
        # Run 0: version 1 on our volume (the baseline the validator and canary compare with).
        run_ours(ours, None, 0, args.canary_requests, args.epochs)
        stock_serving = stock / "serving" / MODEL
        stock_serving.mkdir(parents=True)
        shutil.copytree(ours / "serving" / MODEL / "1", stock_serving / "1")

        servers = []
        our_runs, stock_runs = [], []
        try:
            our_server, our_watch, our_version = start_server(ours / "serving" / MODEL, args.poll)
            servers.append((our_server, our_watch))
            stock_server, stock_watch, stock_version = start_server(stock_serving, args.poll)
            servers.append((stock_server, stock_watch))
            for seed in range(1, args.repeats + 1):
                # A retrained model through our chain, under the running server.
                run_ours(ours, our_server.grpc_address, seed, args.canary_requests, args.epochs)
                our_version, available = our_watch.wait_for(our_version, timeout=300)
                executions = executions_of_last_run(ours / "metadata.sqlite")
                trainer = next(e for e in executions if e["node"] == "PenguinTrainer")
                our_runs.append(chain_summary(executions, trainer["end"], available))

                # The same trained model through the stock chain.
                model_uri = latest_model_uri(ours / "pipeline_root")
                examples_uri = None
                if docker_version:
                    examples_dir = ours / "pipeline_root" / "CsvExampleGen" / "examples"
                    examples_uri = max(examples_dir.iterdir(), key=lambda p: int(p.name))
                # The stock Pusher names versions by the second: never two in one second.
                time.sleep(1.0 - time.time() % 1.0 + 0.01)
                run_stock(stock, model_uri, examples_uri, stock_serving, args.tf_serving_image)
                stock_version, available = stock_watch.wait_for(stock_version, timeout=300)
                executions = executions_of_last_run(stock / "metadata.sqlite")
                # The imported model stands for the trainer's output: measure from its import.
                imported = next(e for e in executions if e["node"] == "import_model")
                stock_runs.append(chain_summary(executions, imported["end"], available))
        finally:
            for server, watcher in servers:
                watcher.stop()
                server.stop()

    our_chain, stock_chain = median_chain(our_runs), median_chain(stock_runs)
    our_push = our_chain["components"]["ServingPusher"] + our_chain["after_last_component_s"]
    stock_push = stock_chain["components"]["Pusher"] + stock_chain["after_last_component_s"]
    result = {
        "model": MODEL,
        "repeats": args.repeats,
        "poll_seconds": args.poll,
        "canary_requests": args.canary_requests,
        "docker_daemon": docker_version,
        "infra_validator": (
            f"ran ({args.tf_serving_image})"
            if docker_version
            else "skipped: no Docker daemon answers here"
        ),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "ours": {"last_version": our_version, **our_chain},
        "stock": {"last_version": stock_version, **stock_chain},
        "ratio_total": round(
            our_chain["trainer_output_to_available_s"]
            / stock_chain["trainer_output_to_available_s"],
            2,
        ),
        "ratio_push_to_available": round(our_push / stock_push, 2),
        "raw": {"ours": our_runs, "stock": stock_runs},
        "benchmark_seconds": round(time.monotonic() - started, 1),
    }
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def table_lines(result: dict) -> list[str]:
    """Returns the benchmark's table as text lines (also used by benchmarks/report.py)."""
    ours, stock = result["ours"], result["stock"]
    lines = [
        "penguin model, trainer output -> new version AVAILABLE, median run of "
        f"{result['repeats']} runs; server poll "
        f"{result['poll_seconds']} s; canary {result['canary_requests']} requests; "
        f"InfraValidator: {result['infra_validator']}",
        f"{'chain':<6} {'step':<34} {'seconds':>8}",
    ]
    for name, chain in (("ours", ours), ("stock", stock)):
        for node, seconds in chain["components"].items():
            lines.append(f"{name:<6} {node:<34} {seconds:>8.3f}")
        lines.append(f"{name:<6} {'(orchestration between components)':<34} "
                     f"{chain['orchestration_s']:>8.3f}")  # fmt: skip
        lines.append(f"{name:<6} {'(last component end -> AVAILABLE)':<34} "
                     f"{chain['after_last_component_s']:>8.3f}")  # fmt: skip
        lines.append(f"{name:<6} {'TOTAL trainer output -> AVAILABLE':<34} "
                     f"{chain['trainer_output_to_available_s']:>8.3f}")  # fmt: skip
    lines.append(f"ratio ours/stock: total {result['ratio_total']:.1f}x; push -> AVAILABLE "
                 f"{result['ratio_push_to_available']:.1f}x")  # fmt: skip
    return lines


def print_table(result: dict) -> None:
    for line in table_lines(result):
        print(line)


if __name__ == "__main__":
    main()
