"""Benchmark of the embedded model server on the penguin model.

Measures latency (p50, p99) and throughput of `serving_default` (one serialized tf.Example per
request) over gRPC and REST at concurrency 1 and 8, next to calling the same signature
in-process (the floor), and the latency of the first requests after a hot swap with and
without a warmup file. Prints a table and writes benchmarks/results/server.json.

The server runs as its own process (`tfx-serving-ext serve`), as it is deployed, so client and
server do not share one interpreter lock; `--in-process-server` runs it inside the benchmark
instead. The `grpc-empty` row is a GetModelStatus call: the cost of the Python gRPC stack on both
ends with no model work, which bounds how close any Python gRPC path can get to in-process.

Run: .venv/bin/python benchmarks/server.py [--seconds 3] [--in-process-server]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results" / "server.json"


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def measure(call, concurrency: int, seconds: float, warm: int = 20) -> dict:
    """Returns p50/p99 latency (ms) and throughput (req/s) of `call` run by N threads."""
    for _ in range(warm):
        call()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    stop = threading.Event()

    def worker(out: list[float]) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            call()
            out.append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker, args=(out,)) for out in latencies]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    flat = [x * 1000 for out in latencies for x in out]
    return {
        "requests": len(flat),
        "p50_ms": _percentile(flat, 50),
        "p99_ms": _percentile(flat, 99),
        "throughput_rps": len(flat) / elapsed,
    }


def write_warmup(version_dir: Path, request, count: int) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for _ in range(count):
            writer.write(log.SerializeToString())


def first_requests_after_swap(client, base: Path, model_dir: Path, version: int, request, n=5):
    """Returns the latencies (ms) of the first `n` requests once `version` is AVAILABLE."""
    staging = base / f".staging-{version}"
    shutil.copytree(model_dir, staging)
    staging.rename(base / str(version))
    client.wait_until_available("penguin", version=version, timeout=120, poll_interval=0.01)
    latencies = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.raw_predict(request)
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.model_spec.version.value == version, response.model_spec
    return latencies


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_in_subprocess(base: Path, poll_seconds: float):
    """Yields (gRPC address, REST URL) of `tfx-serving-ext serve` running on `base`."""
    rest_port = _free_port()
    log_path = base.parent / "server.log"
    command = [
        sys.executable,
        "-m",
        "tfx_serving_ext.cli",
        "serve",
        "--port=0",
        f"--rest_api_port={rest_port}",
        "--model_name=penguin",
        f"--model_base_path={base}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(r"Running gRPC ModelServer at (\S+:\d+)", log_path.read_text())
            if found:
                break
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start within 120 s")
        yield found.group(1), f"http://127.0.0.1:{rest_port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def serve_in_process(base: Path, poll_seconds: float):
    """Yields (gRPC address, REST URL) of a ModelServer running in this process."""
    from tfx_serving_ext.server import ModelServer, ServerOptions

    options = ServerOptions(
        model_name="penguin", model_base_path=str(base), file_system_poll_wait_seconds=poll_seconds
    )
    with ModelServer(options) as server:
        yield server.grpc_address, server.rest_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument(
        "--in-process-server", action="store_true", help="run the server inside this process"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import tensorflow as tf
    from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

    from tests.support.penguin import penguin_examples, train_penguin_model
    from tfx_serving_ext.client.client import ServingClient

    work = Path(tempfile.mkdtemp(prefix="server-bench-"))
    try:
        model_dir = train_penguin_model(work / "model", epochs=5, seed=0)
        serialized = penguin_examples()[0].SerializeToString()
        batch = np.array([serialized], dtype=object)

        loaded = tf.saved_model.load(str(model_dir))
        signature = loaded.signatures["serving_default"]
        results: dict = {
            "model": "penguin serving_default, 1 example per request",
            "server": "in-process" if args.in_process_server else "subprocess",
        }
        rows = []

        def in_process():
            outputs = signature(examples=tf.constant(batch))
            return {k: v.numpy() for k, v in outputs.items()}

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "penguin"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))

        base = work / "base"
        base.mkdir()
        shutil.copytree(model_dir, base / "1")
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "penguin"
        serve = serve_in_process if args.in_process_server else serve_in_subprocess
        with serve(base, 0.05) as (grpc_address, rest_url):
            grpc_client = ServingClient(grpc_address)
            rest_client = ServingClient(rest_url, protocol="rest")
            grpc_client.wait_until_available("penguin", timeout=120)
            rest_client.raw_predict(request)  # caches the signature for REST output dtypes
            for concurrency in (1, 8):
                floor = measure(in_process, concurrency, args.seconds)
                rows.append(("in-process", concurrency, floor, 1.0))
                for name, client in (("grpc", grpc_client), ("rest", rest_client)):
                    stats = measure(
                        lambda c=client: c.raw_predict(request), concurrency, args.seconds
                    )
                    rows.append((name, concurrency, stats, stats["p50_ms"] / floor["p50_ms"]))
                if concurrency == 1:
                    empty = measure(
                        lambda: grpc_client.raw_model_status(status_request), 1, args.seconds
                    )
                    rows.append(("grpc-empty", 1, empty, empty["p50_ms"] / floor["p50_ms"]))

            cold = first_requests_after_swap(grpc_client, base, model_dir, 2, request)
            warmed_dir = work / "warmed"
            shutil.copytree(model_dir, warmed_dir)
            write_warmup(warmed_dir, request, 10)
            warm = first_requests_after_swap(grpc_client, base, warmed_dir, 3, request)
            grpc_client.close()
            rest_client.close()

        results["steady_state"] = [
            {"path": name, "concurrency": c, **stats, "p50_ratio_to_in_process": ratio}
            for name, c, stats, ratio in rows
        ]
        results["first_requests_after_hot_swap_ms"] = {
            "without_warmup": cold,
            "with_warmup_file": warm,
        }
        grpc_c1 = next(
            r for r in results["steady_state"] if r["path"] == "grpc" and r["concurrency"] == 1
        )
        results["target_grpc_p50_c1_within_3x"] = grpc_c1["p50_ratio_to_in_process"] <= 3.0

        print(
            f"{'path':<11}{'conc':>5}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'req/s':>9}{'p50 / in-process':>18}"
        )
        for name, c, stats, ratio in rows:
            print(
                f"{name:<11}{c:>5}{stats['requests']:>10}{stats['p50_ms']:>9.3f}"
                f"{stats['p99_ms']:>9.3f}{stats['throughput_rps']:>9.0f}{ratio:>17.2f}x"
            )
        print("\nFirst 5 gRPC requests after a hot swap (ms):")
        print("  without warmup file: " + ", ".join(f"{x:.2f}" for x in cold))
        print("  with warmup file:    " + ", ".join(f"{x:.2f}" for x in warm))
        print(
            f"\ngRPC p50 at concurrency 1 within 3x of in-process: "
            f"{results['target_grpc_p50_c1_within_3x']} ({grpc_c1['p50_ratio_to_in_process']:.2f}x)"
        )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
