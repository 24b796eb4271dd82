"""Benchmark of the embedded model server on the penguin model.

Measures latency (p50, p99) and throughput of `serving_default` (one serialized tf.Example per
request) over gRPC and REST at concurrency 1 and 8, next to calling the same signature
in-process (the floor), and the latency of the first requests after a hot swap with and
without a warmup file. Prints a table and writes benchmarks/results/server.json.

Server-side batching: gRPC requests/s and p50/p99 at concurrency 8 and 32 with batching off and
on (`--enable_batching` with BATCHING_PARAMETERS below; both servers have --grpc_max_threads=32,
so that without batching 32 requests can run at once), and their ratios; beside them, one
request at a time, the gRPC Predict and the bare signature call (the model's share of a lone
request's cost; batching amortizes the model's call, not the rest). With batching the server's
gRPC front end is an event loop on which requests wait for their batch without a thread each
(see tfx_serving_ext/server/grpc_service.py). The load for these rows comes from coroutines on
one asyncio gRPC channel, which take about half the CPU per request of as many client threads
on the cores the server shares (the threaded client measured 1.92x). Target (issue 14): on gives
at least 2x the requests/s of off at concurrency 32, at a p99 no worse than 1.5x off.

The server runs as its own process (`tfx-serving-ext serve`), as it is deployed, so client and
server do not share one interpreter lock; `--in-process-server` runs it inside the benchmark
instead. The `grpc-empty` row is a GetModelStatus call: the cost of the Python gRPC stack on both
ends with no model work, which bounds how close any Python gRPC path can get to in-process.

Run: .venv/bin/python benchmarks/server.py [--seconds 3] [--in-process-server] [--batching-only]
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
GRPC_THREADS = 32
BATCHING_CONCURRENCY = (8, 32)
# batch_timeout_micros 0 (a batch grows while the batch thread is busy, so a lone request never
# waits), max_batch_size the highest concurrency measured, and one batch thread: TF Serving
# advises one per core, but here every batch thread also needs the interpreter lock that the
# gRPC threads hold for most of a request, and one measured best (--batching-parameters to try).
BATCHING_PARAMETERS = """max_batch_size { value: 32 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 64 }
num_batch_threads { value: 1 }
"""


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


def measure_async(address: str, request, concurrency: int, seconds: float, warm: int = 20) -> dict:
    """As `measure`, for gRPC Predict from N coroutines on one asyncio channel.

    The load generator shares the machine's cores with the server: N client threads spend
    about twice the CPU per request of N coroutines (thread handoffs), CPU the server then
    lacks. The batching rows use this leaner client, both sides alike.
    """
    import asyncio

    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    async def run() -> dict:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(warm):
                await stub.Predict(request, timeout=60)
            latencies: list[float] = []
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    await stub.Predict(request, timeout=60)
                    latencies.append((time.perf_counter() - started) * 1000)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        return {
            "requests": len(latencies),
            "p50_ms": _percentile(latencies, 50),
            "p99_ms": _percentile(latencies, 99),
            "throughput_rps": len(latencies) / elapsed,
        }

    return asyncio.run(run())


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
def serve_in_subprocess(base: Path, poll_seconds: float, batching_file: Path | None = None):
    """Yields (gRPC address, REST URL) of `tfx-serving-ext serve` running on `base`."""
    rest_port = _free_port()
    log_path = base.parent / f"server-{base.name}.log"
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
        f"--grpc_max_threads={GRPC_THREADS}",
    ]
    if batching_file is not None:
        command += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
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
def serve_in_process(base: Path, poll_seconds: float, batching_file: Path | None = None):
    """Yields (gRPC address, REST URL) of a ModelServer running in this process."""
    from tfx_serving_ext.server import ModelServer, ServerOptions

    options = ServerOptions(
        model_name="penguin",
        model_base_path=str(base),
        file_system_poll_wait_seconds=poll_seconds,
        grpc_max_workers=GRPC_THREADS,
        enable_batching=batching_file is not None,
        batching_parameters_file=str(batching_file or ""),
    )
    with ModelServer(options) as server:
        yield server.grpc_address, server.rest_url


def measure_batching(
    serve,
    model_dir: Path,
    work: Path,
    request,
    seconds: float,
    parameters_text: str,
    rounds: int,
    in_process,
) -> dict:
    """Returns gRPC throughput and latency with batching off and on, and their ratios.

    Both servers run at once and the measurements alternate (off, on, off, on, ...), so that a
    change in the machine's load during the run weighs on both sides alike; each row is the
    median of `rounds` measurements.
    """
    from tfx_serving_ext.client.client import ServingClient

    parameters = work / "batching.pbtxt"
    parameters.write_text(parameters_text)
    samples: dict[tuple[str, int], list[dict]] = {}
    with contextlib.ExitStack() as stack:
        clients, addresses = {}, {}
        for batching in ("off", "on"):
            base = work / f"batching-{batching}"
            base.mkdir()
            shutil.copytree(model_dir, base / "1")
            address, _ = stack.enter_context(
                serve(base, 1.0, parameters if batching == "on" else None)
            )
            clients[batching] = stack.enter_context(ServingClient(address))
            clients[batching].wait_until_available("penguin", timeout=120)
            addresses[batching] = address
        for _ in range(rounds):
            for concurrency in BATCHING_CONCURRENCY:
                for batching, address in addresses.items():
                    stats = measure_async(address, request, concurrency, seconds)
                    samples.setdefault((batching, concurrency), []).append(stats)
            # One request at a time, through gRPC and as the bare signature call: the model's
            # share of a request's cost, the most that batching the model's work can save.
            off = clients["off"]
            samples.setdefault(("off", 1), []).append(
                measure(lambda c=off: c.raw_predict(request), 1, seconds)
            )  # a thread, as the signature call beside it
            samples.setdefault(("signature call", 1), []).append(measure(in_process, 1, seconds))
    rows = []
    for (batching, concurrency), runs in samples.items():
        row = {"batching": batching, "concurrency": concurrency}
        row["requests"] = sum(r["requests"] for r in runs)
        for key in ("p50_ms", "p99_ms", "throughput_rps"):
            row[key] = float(np.median([r[key] for r in runs]))
        rows.append(row)
    ratios = []
    for concurrency in BATCHING_CONCURRENCY:
        off, on = (
            next(r for r in rows if r["batching"] == b and r["concurrency"] == concurrency)
            for b in ("off", "on")
        )
        ratios.append(
            {
                "concurrency": concurrency,
                "throughput_on_over_off": on["throughput_rps"] / off["throughput_rps"],
                "p99_on_over_off": on["p99_ms"] / off["p99_ms"],
            }
        )
    at_32 = next(r for r in ratios if r["concurrency"] == 32)
    bare = next(r for r in rows if r["batching"] == "signature call")
    grpc_1 = next(r for r in rows if r["batching"] == "off" and r["concurrency"] == 1)
    model_share = bare["p50_ms"] / grpc_1["p50_ms"]
    return {
        "cores": os.cpu_count(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "grpc_max_threads": GRPC_THREADS,
        "rounds": rounds,
        "seconds_each": seconds,
        "parameters": " ".join(parameters_text.split()),
        "rows": rows,
        "ratios": ratios,
        # p50 of the bare signature call over p50 of a gRPC Predict, one at a time: the model's
        # share of a lone request (the rest is gRPC on both ends, decoding, checks, response).
        "model_share_of_request": model_share,
        "target": "at concurrency 32: throughput on/off >= 2.0 at p99 on/off <= 1.5",
        "target_met": at_32["throughput_on_over_off"] >= 2.0 and at_32["p99_on_over_off"] <= 1.5,
    }


def print_batching(batching: dict) -> None:
    print(f"\nServer-side batching ({batching['cores']} cores; {batching['parameters']}):")
    print(f"{'batching':<15}{'conc':>5}{'requests':>10}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for r in batching["rows"]:
        print(
            f"{r['batching']:<15}{r['concurrency']:>5}{r['requests']:>10}{r['p50_ms']:>9.3f}"
            f"{r['p99_ms']:>9.3f}{r['throughput_rps']:>9.0f}"
        )
    print(
        f"model's share of a lone request (signature call p50 / gRPC Predict p50): "
        f"{batching['model_share_of_request']:.2f}"
    )
    for r in batching["ratios"]:
        print(
            f"concurrency {r['concurrency']}: req/s on/off {r['throughput_on_over_off']:.2f}x, "
            f"p99 on/off {r['p99_on_over_off']:.2f}x"
        )
    print(f"target ({batching['target']}) met: {batching['target_met']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument(
        "--in-process-server", action="store_true", help="run the server inside this process"
    )
    parser.add_argument(
        "--batching-parameters",
        default=BATCHING_PARAMETERS,
        help="text-format BatchingParameters of the batching-on server",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations of off and on")
    parser.add_argument(
        "--batching-only",
        action="store_true",
        help="measure only batching off vs on (updates that part of the results)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import tensorflow as tf
    from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

    from tests.support.penguin import penguin_examples, train_penguin_model
    from tfx_serving_ext.client.client import ServingClient

    work = Path(tempfile.mkdtemp(prefix="server-bench-"))
    serve = serve_in_process if args.in_process_server else serve_in_subprocess
    try:
        model_dir = train_penguin_model(work / "model", epochs=5, seed=0)
        serialized = penguin_examples()[0].SerializeToString()
        batch = np.array([serialized], dtype=object)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "penguin"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
        loaded = tf.saved_model.load(str(model_dir))
        signature = loaded.signatures["serving_default"]

        def in_process():
            outputs = signature(examples=tf.constant(batch))
            return {k: v.numpy() for k, v in outputs.items()}

        if args.batching_only:
            results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
            results["batching"] = measure_batching(
                serve,
                model_dir,
                work,
                request,
                args.seconds,
                args.batching_parameters,
                args.rounds,
                in_process,
            )
            print_batching(results["batching"])
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(f"wrote {RESULTS}")
            return 0

        results: dict = {
            "model": "penguin serving_default, 1 example per request",
            "server": "in-process" if args.in_process_server else "subprocess",
        }
        rows = []

        base = work / "base"
        base.mkdir()
        shutil.copytree(model_dir, base / "1")
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "penguin"
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
        results["batching"] = measure_batching(
            serve,
            model_dir,
            work,
            request,
            args.seconds,
            args.batching_parameters,
            args.rounds,
            in_process,
        )

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
        print_batching(results["batching"])
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
