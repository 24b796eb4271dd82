"""Benchmark of the WarmupRequestWriter on the penguin model.

1. Throughput: examples/second of the writer's executor (Beam sampling of the whole split on
   the DirectRunner's engine, request building, in-process replay, model copy) for 10k and 100k
   synthesized penguin examples, to see that it scales linearly.
2. Hot swap: with the server benchmark's harness (benchmarks/server.py; the server in its own
   process), the p99 of the first 50 gRPC requests after a hot swap, without and with the
   writer's warmup file (median over 3 swaps of each), next to the steady-state p99.
   Goal: with warmup, within 1.5x of steady state.

Prints a table and writes benchmarks/results/warmup.json.
Run: .venv/bin/python benchmarks/warmup.py [--sizes 10000 100000] [--seconds 3]
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results" / "warmup.json"
FIRST_REQUESTS = 50
SWAPS = 3


def _server_harness():
    """Returns benchmarks/server.py as a module (its `measure` and hot-swap helpers)."""
    path = Path(__file__).resolve().parent / "server.py"
    spec = importlib.util.spec_from_file_location("server_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthesize_examples(root: Path, count: int, seed: int = 0) -> Path:
    """Writes `count` penguin-like examples (real rows plus noise) as an Examples artifact."""
    import tensorflow as tf

    from tests.support.penguin import penguin_examples

    rng = np.random.default_rng(seed)
    base = penguin_examples()
    directory = root / "Split-eval"
    directory.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(directory / "data_tfrecord-00000-of-00001.gz"), options) as w:
        for index in range(count):
            example = tf.train.Example()
            example.CopyFrom(base[index % len(base)])
            for feature in example.features.feature.values():
                if feature.HasField("float_list"):
                    value = feature.float_list.value[0]
                    feature.float_list.value[0] = value * (1 + 0.02 * rng.standard_normal())
            w.write(example.SerializeToString())
    return root


def run_writer(model_uri: Path, examples_uri: Path, output_uri: Path, num_examples: int):
    """Returns (seconds, output Model artifact) of one WarmupRequestWriter executor run."""
    from tfx.types import standard_artifacts

    from tfx_serving_ext.components.warmup_request_writer import executor as writer

    model = standard_artifacts.Model()
    model.uri = str(model_uri)
    examples = standard_artifacts.Examples()
    examples.uri = str(examples_uri)
    examples.split_names = json.dumps(["eval"])
    output = standard_artifacts.Model()
    output.uri = str(output_uri)
    started = time.perf_counter()
    writer.Executor().Do(
        {writer.MODEL_KEY: [model], writer.EXAMPLES_KEY: [examples]},
        {writer.OUTPUT_MODEL_KEY: [output]},
        {writer.NUM_EXAMPLES_KEY: num_examples},
    )
    return time.perf_counter() - started, output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--num-examples", type=int, default=100, help="examples sampled")
    parser.add_argument("--seconds", type=float, default=3.0, help="steady-state duration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from tests.support.penguin import penguin_examples, train_penguin_model
    from tfx_serving_ext.client.client import ServingClient

    harness = _server_harness()
    work = Path(tempfile.mkdtemp(prefix="warmup-bench-"))
    results: dict = {"model": "penguin (serving_default + predict_features)"}
    try:
        model_uri = work / "model"
        train_penguin_model(model_uri / "Format-Serving", epochs=5, seed=0)

        throughput = []
        warmed_output = None
        for size in args.sizes:
            examples_uri = synthesize_examples(work / f"examples_{size}", size)
            seconds, output = run_writer(
                model_uri, examples_uri, work / f"warmed_{size}", args.num_examples
            )
            throughput.append(
                {
                    "examples": size,
                    "seconds": seconds,
                    "examples_per_second": size / seconds,
                    "warmup_records": output.get_int_custom_property("warmup_records"),
                }
            )
            warmed_output = work / f"warmed_{size}"
        results["writer_throughput"] = throughput

        serialized = penguin_examples()[0].SerializeToString()
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "penguin"
        request.inputs["examples"].CopyFrom(
            tf.make_tensor_proto(np.array([serialized], dtype=object), dtype=tf.string)
        )
        base = work / "serving"
        base.mkdir()
        shutil.copytree(model_uri / "Format-Serving", base / "1")
        # The server runs as its own process, as deployed: in-process, the old version's
        # teardown would compete with the measuring client for the interpreter lock.
        cold, warm = [], []
        with harness.serve_in_subprocess(base, 0.05) as (grpc_address, _):
            client = ServingClient(grpc_address)
            client.wait_until_available("penguin", timeout=120)
            steady = harness.measure(lambda: client.raw_predict(request), 1, args.seconds)
            version = 2
            for _ in range(SWAPS):  # alternate, so both kinds of swap see the same conditions
                for runs, model in ((cold, model_uri), (warm, warmed_output)):
                    runs.append(
                        harness.first_requests_after_swap(
                            client, base, model / "Format-Serving", version, request, FIRST_REQUESTS
                        )
                    )
                    version += 1
            client.close()
        p99 = {
            "steady_state": steady["p99_ms"],
            "first_50_without_warmup": float(np.median([np.percentile(r, 99) for r in cold])),
            "first_50_with_warmup": float(np.median([np.percentile(r, 99) for r in warm])),
        }
        results["hot_swap_p99_ms"] = p99
        results["hot_swap_runs"] = SWAPS
        results["first_requests_ms"] = {"without_warmup": cold, "with_warmup": warm}
        results["target_with_warmup_within_1_5x_steady"] = (
            p99["first_50_with_warmup"] <= 1.5 * p99["steady_state"]
        )

        print(f"{'examples':>10}{'seconds':>10}{'examples/s':>12}{'records':>9}")
        for row in throughput:
            print(
                f"{row['examples']:>10}{row['seconds']:>10.1f}"
                f"{row['examples_per_second']:>12.0f}{row['warmup_records']:>9}"
            )
        print(
            f"\np99 (ms) of the first {FIRST_REQUESTS} gRPC requests after a hot swap "
            f"(median of {SWAPS} swaps each; server in its own process):"
        )
        print(f"{'steady state':<28}{p99['steady_state']:>8.2f}")
        for key in ("first_50_without_warmup", "first_50_with_warmup"):
            ratio = p99[key] / p99["steady_state"]
            print(f"{key:<28}{p99[key]:>8.2f}  ({ratio:.2f}x steady)")
        print(
            "\nwith warmup within 1.5x of steady-state p99: "
            f"{results['target_with_warmup_within_1_5x_steady']}"
        )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
