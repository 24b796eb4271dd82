"""Benchmark of the serving canary on the penguin model (embedded server, in-process).

For 100, 1000 and 10000 requests at concurrency 1 and 8 (candidate = baseline = the penguin
model, so every request number is sent twice): the wall time of a whole canary run (server
start, load, unmeasured warm-up, traffic, comparison, report with plots) and of its traffic
phase, and the sends per second the canary drives. Beside it, a plain client loop against the
same server and load (benchmarks/server.py's `measure` harness: the same prebuilt request sent
with ServingClient.raw_predict), so `ratio` = canary sends/s / plain loop requests/s is the
canary's own overhead. Prints a table and writes benchmarks/results/canary.json.

Run: .venv/bin/python benchmarks/canary.py [--max-seconds 40]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).resolve().parent / "results" / "canary.json"
COUNTS = (100, 1000, 10000)
CONCURRENCY = (1, 8)


def _server_harness():
    """Returns benchmarks/server.py's `measure(call, concurrency, seconds)`."""
    spec = importlib.util.spec_from_file_location("server_benchmark", ROOT / "benchmarks/server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.measure


def plain_loop_throughput(model_dir: Path, records: list[bytes], seconds: float) -> dict[int, dict]:
    """Returns, per concurrency, the plain client loop's stats against the embedded server."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    measure = _server_harness()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "penguin"
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto([records[0]], dtype=tf.string))
    base = Path(tempfile.mkdtemp(prefix="canary-bench-base-"))
    try:
        (base / "1").symlink_to(model_dir)
        options = ServerOptions(model_name="penguin", model_base_path=str(base), enable_rest=False)
        with ModelServer(options) as server, ServingClient(server.grpc_address) as client:
            client.wait_until_available("penguin", timeout=120)
            return {
                c: measure(lambda: client.raw_predict(request), c, seconds) for c in CONCURRENCY
            }
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=40.0, help="traffic bound per run")
    parser.add_argument("--loop-seconds", type=float, default=3.0, help="plain loop duration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for handler in logging.getLogger().handlers:  # keep the server's INFO lines off the table
        handler.setLevel(logging.WARNING)

    from tfx.proto import infra_validator_pb2

    from tests.support.penguin import penguin_examples, train_penguin_model
    from tfx_serving_ext.canary.run import CanaryConfig, run_canary

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    try:
        model_dir = train_penguin_model(work / "model", epochs=5, seed=0)
        records = [e.SerializeToString() for e in penguin_examples()[:100]]
        loop = plain_loop_throughput(model_dir, records, args.loop_seconds)
        validation = infra_validator_pb2.ValidationSpec(max_loading_time_seconds=120, num_tries=1)
        rows = []
        for count in COUNTS:
            for concurrency in CONCURRENCY:
                config = CanaryConfig(
                    num_requests=count, concurrency=concurrency, max_seconds=args.max_seconds
                )
                started = time.perf_counter()
                result = run_canary(
                    model_dir,
                    baseline_dir=model_dir,
                    examples=records,
                    output_dir=work / f"report-{count}-{concurrency}",
                    config=config,
                    validation_spec=validation,
                )
                wall = time.perf_counter() - started
                traffic = result.report["traffic"]
                plain = loop[concurrency]["throughput_rps"]
                rows.append(
                    {
                        "requests": count,
                        "concurrency": concurrency,
                        "blessed": result.blessed,
                        "sends": traffic["sends"],
                        "run_wall_s": round(wall, 2),
                        "traffic_wall_s": traffic["wall_seconds"],
                        "overhead_s": round(wall - traffic["wall_seconds"], 2),
                        "canary_sends_per_s": traffic["sends_per_second"],
                        "plain_loop_rps": round(plain, 1),
                        "ratio": round(traffic["sends_per_second"] / plain, 3),
                        "candidate_p50_ms": round(
                            result.report["latency_ms"]["candidate"]["p50"], 3
                        ),
                        "candidate_p99_ms": round(
                            result.report["latency_ms"]["candidate"]["p99"], 3
                        ),
                        "stopped_early": traffic["stopped_early"],
                    }
                )
        header = (
            f"{'requests':>8} {'conc':>4} {'sends':>6} {'run s':>7} {'traffic s':>9} "
            f"{'overhead s':>10} {'canary/s':>9} {'loop/s':>8} {'ratio':>6} {'p50 ms':>7} "
            f"{'p99 ms':>7} blessed"
        )
        print(header)
        for r in rows:
            print(
                f"{r['requests']:>8} {r['concurrency']:>4} {r['sends']:>6} {r['run_wall_s']:>7} "
                f"{r['traffic_wall_s']:>9} {r['overhead_s']:>10} {r['canary_sends_per_s']:>9} "
                f"{r['plain_loop_rps']:>8} {r['ratio']:>6} {r['candidate_p50_ms']:>7} "
                f"{r['candidate_p99_ms']:>7} {r['blessed']}"
                + (f"  ({r['stopped_early']})" if r["stopped_early"] else "")
            )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "model": "penguin serving_default, 1 example per request, embedded in-process",
                    "note": "each request number is sent to candidate and baseline (2 sends)",
                    "plain_loop": {str(c): v for c, v in loop.items()},
                    "runs": rows,
                    "benchmark_wall_s": round(time.perf_counter() - began, 1),
                },
                indent=1,
            )
        )
        print(f"written {RESULTS} in {time.perf_counter() - began:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
