"""Benchmark of the WarmupRequestWriter and of the example reading of the validator and canary.

1. Scale: for 10k, 100k and 1M synthesized penguin examples (an Examples artifact of 10 gzip
   shards, as ExampleGen writes it), each in a fresh process so its peak RSS is its own:
   - the writer's executor (Beam sampling of the whole split with a bottom-k CombineFn on the
     DirectRunner's in-process engine, request building, in-process replay, model copy), run
     twice: median wall time, time per example and highest peak RSS, relative to 10k. Goal:
     time per example at most the 10k one (at most linear), peak RSS flat (the sample, never
     the split, in memory);
   - `read_examples(limit=100)`, how the validator and the canary read: wall time and records
     read, for the gzip split and for the same split uncompressed (read at spread byte
     offsets). Goal: independent of the split's size.
   Splits are generated once into a cache under /tmp (keyed by size), reused by later runs.
2. Hot swap: with the server benchmark's harness (benchmarks/server.py; the server in its own
   process), the p99 of the first 50 gRPC requests after a hot swap, without and with the
   writer's warmup file (median over 3 swaps of each), next to the steady-state p99.
   Goal: with warmup, within 1.5x of steady state.

Prints a table and writes benchmarks/results/warmup.json.
Run: .venv/bin/python benchmarks/warmup.py [--sizes 10000 100000 1000000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).resolve().parent / "results" / "warmup.json"
CACHE = Path(tempfile.gettempdir()) / "tfx-serving-ext-bench" / "warmup-examples-v1"
SHARDS = 10
FIRST_REQUESTS = 50
SWAPS = 3


def _server_harness():
    """Returns benchmarks/server.py as a module (its `measure` and hot-swap helpers)."""
    path = Path(__file__).resolve().parent / "server.py"
    spec = importlib.util.spec_from_file_location("server_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthesize_examples(count: int, shards: int = SHARDS, seed: int = 0) -> Path:
    """Returns the cached Examples artifact of `count` penguin-like examples (rows plus noise).

    `Split-eval/` holds `shards` gzip files, as ExampleGen writes them; `Split-plain/` the same
    records uncompressed. Written once per size into CACHE (complete when `DONE` exists).
    """
    root = CACHE / f"{count}-{shards}"
    if (root / "DONE").is_file():
        return root
    import tensorflow as tf

    from tests.support.penguin import penguin_examples

    shutil.rmtree(root, ignore_errors=True)
    base = penguin_examples()
    floats = [k for k, f in base[0].features.feature.items() if f.HasField("float_list")]
    noise = np.random.default_rng(seed).standard_normal((count, len(floats))) * 0.02 + 1.0
    writers = []
    for split, compression, suffix in (("eval", "GZIP", ".gz"), ("plain", "", "")):
        (root / f"Split-{split}").mkdir(parents=True)
        options = tf.io.TFRecordOptions(compression_type=compression)
        writers.append(
            [
                tf.io.TFRecordWriter(
                    str(root / f"Split-{split}" / f"data_tfrecord-{n:05d}-of-{shards:05d}{suffix}"),
                    options,
                )
                for n in range(shards)
            ]
        )
    example = tf.train.Example()
    for index in range(count):
        example.CopyFrom(base[index % len(base)])
        for column, key in enumerate(floats):
            values = example.features.feature[key].float_list.value
            values[0] = values[0] * noise[index, column]
        record = example.SerializeToString()
        for split_writers in writers:
            split_writers[index * shards // count].write(record)
    for split_writers in writers:
        for writer in split_writers:
            writer.close()
    (root / "DONE").write_text(f"{count} examples\n")
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


def _rss_mb() -> float:
    """Returns this process's resident set size now, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_writer(model_uri: str, examples_uri: str, output_uri: str, num_examples: str) -> dict:
    """Runs the writer once in this (fresh) process; returns its time and memory."""
    import tensorflow  # noqa: F401  (imported before measuring: the base every size shares)

    from tfx_serving_ext.components.warmup_request_writer import executor  # noqa: F401

    before = _rss_mb()
    seconds, output = run_writer(
        Path(model_uri), Path(examples_uri), Path(output_uri), int(num_examples)
    )
    return {
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_rss_mb": _peak_rss_mb(),
        "warmup_records": output.get_int_custom_property("warmup_records"),
    }


def child_reader(examples_uri: str, split: str, num_examples: str) -> dict:
    """Samples like the validator and the canary, 3 times in this process; returns the median."""
    from tfx_serving_ext.checks.examples import sample_split

    times, sample = [], None
    for _ in range(3):
        started = time.perf_counter()
        sample = sample_split(examples_uri, split, num_examples=int(num_examples))
        times.append(time.perf_counter() - started)
    return {
        "seconds": float(np.median(times)),
        "records": len(sample.records),
        "records_read": sample.records_read,
        "files_sampled": sum(1 for n in sample.records_per_file.values() if n),
        "files": len(sample.records_per_file),
        "peak_rss_mb": _peak_rss_mb(),
    }


CHILDREN = {"writer": child_writer, "reader": child_reader}


def in_fresh_process(kind: str, *args) -> dict:
    """Returns what `CHILDREN[kind](*args)` returns, run in a new interpreter."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, __file__, "--child", kind, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure_scale(
    model_uri: Path, work: Path, sizes: list[int], num_examples: int, repeats: int
) -> dict:
    """Returns the writer's and the readers' figures per split size, with ratios to the first.

    The writer runs `repeats` times per size, each in a fresh process: the median time and the
    highest peak RSS are kept (every run's figures are in the JSON).
    """
    rows = []
    for size in sizes:
        started = time.perf_counter()
        examples_uri = synthesize_examples(size)
        print(f"{size} examples ready in {time.perf_counter() - started:.1f} s", flush=True)
        runs = [
            in_fresh_process("writer", model_uri, examples_uri, work / f"warmed_{size}", n)
            for n in [num_examples] * repeats
        ]
        writer = {
            "seconds": float(np.median([r["seconds"] for r in runs])),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "rss_before_mb": float(np.median([r["rss_before_mb"] for r in runs])),
            "warmup_records": runs[0]["warmup_records"],
        }
        gzip_read = in_fresh_process("reader", examples_uri, "eval", num_examples)
        plain_read = in_fresh_process("reader", examples_uri, "plain", num_examples)
        rows.append(
            {
                "examples": size,
                "writer_seconds": writer["seconds"],
                "writer_us_per_example": writer["seconds"] / size * 1e6,
                "writer_peak_rss_mb": writer["peak_rss_mb"],
                "writer_rss_before_mb": writer["rss_before_mb"],
                "writer_runs_seconds": [r["seconds"] for r in runs],
                "writer_runs_peak_rss_mb": [r["peak_rss_mb"] for r in runs],
                "warmup_records": writer["warmup_records"],
                "read_gzip_ms": gzip_read["seconds"] * 1000,
                "read_gzip_records_read": gzip_read["records_read"],
                "read_gzip_files_sampled": gzip_read["files_sampled"],
                "read_plain_ms": plain_read["seconds"] * 1000,
                "read_plain_records_read": plain_read["records_read"],
                "read_plain_files_sampled": plain_read["files_sampled"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    first = rows[0]
    for row in rows:
        row["time_per_example_ratio"] = (
            row["writer_us_per_example"] / first["writer_us_per_example"]
        )
        row["peak_rss_ratio"] = row["writer_peak_rss_mb"] / first["writer_peak_rss_mb"]
        row["read_gzip_ratio"] = row["read_gzip_ms"] / first["read_gzip_ms"]
        row["read_plain_ratio"] = row["read_plain_ms"] / first["read_plain_ms"]
    return {
        "cores": os.cpu_count(),
        "shards": SHARDS,
        "num_examples": num_examples,
        "writer_repeats": repeats,
        "rows": rows,
        "time_grows_at_most_linearly": all(r["time_per_example_ratio"] <= 1.05 for r in rows),
        "peak_rss_flat": all(r["peak_rss_ratio"] <= 1.1 for r in rows),
    }


def measure_hot_swap(model_uri: Path, warmed_output: Path, seconds: float) -> dict:
    """Returns the p99s of the first requests after hot swaps without and with warmup."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from tests.support.penguin import penguin_examples
    from tfx_serving_ext.client.client import ServingClient

    harness = _server_harness()
    serialized = penguin_examples()[0].SerializeToString()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "penguin"
    request.inputs["examples"].CopyFrom(
        tf.make_tensor_proto(np.array([serialized], dtype=object), dtype=tf.string)
    )
    base = model_uri.parent / "serving"
    base.mkdir()
    shutil.copytree(model_uri / "Format-Serving", base / "1")
    # The server runs as its own process, as deployed: in-process, the old version's
    # teardown would compete with the measuring client for the interpreter lock.
    cold, warm = [], []
    with harness.serve_in_subprocess(base, 0.05) as (grpc_address, _):
        client = ServingClient(grpc_address)
        client.wait_until_available("penguin", timeout=120)
        steady = harness.measure(lambda: client.raw_predict(request), 1, seconds)
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
    return {
        "hot_swap_p99_ms": p99,
        "hot_swap_runs": SWAPS,
        "first_requests_ms": {"without_warmup": cold, "with_warmup": warm},
        "target_with_warmup_within_1_5x_steady": (
            p99["first_50_with_warmup"] <= 1.5 * p99["steady_state"]
        ),
    }


def print_tables(results: dict) -> None:
    scale = results["scale"]
    print(
        f"\n{scale['cores']} cores, {scale['shards']} gzip shards, {scale['num_examples']} sampled"
    )
    print(
        f"{'examples':>9}{'writer s':>10}{'us/ex':>8}{'x10k':>6}{'peak MB':>9}{'x10k':>6}"
        f"{'read gz ms':>11}{'read':>6}{'read plain ms':>14}{'read':>6}"
    )
    for r in scale["rows"]:
        print(
            f"{r['examples']:>9}{r['writer_seconds']:>10.1f}{r['writer_us_per_example']:>8.1f}"
            f"{r['time_per_example_ratio']:>6.2f}{r['writer_peak_rss_mb']:>9.0f}"
            f"{r['peak_rss_ratio']:>6.2f}{r['read_gzip_ms']:>11.1f}"
            f"{r['read_gzip_records_read']:>6}{r['read_plain_ms']:>14.1f}"
            f"{r['read_plain_records_read']:>6}"
        )
    p99 = results.get("hot_swap_p99_ms")
    if p99:
        print(
            f"\np99 (ms) of the first {FIRST_REQUESTS} gRPC requests after a hot swap "
            f"(median of {SWAPS} swaps each; server in its own process):"
        )
        print(f"{'steady state':<28}{p99['steady_state']:>8.2f}")
        for key in ("first_50_without_warmup", "first_50_with_warmup"):
            print(f"{key:<28}{p99[key]:>8.2f}  ({p99[key] / p99['steady_state']:.2f}x steady)")


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        print(json.dumps(CHILDREN[sys.argv[2]](*sys.argv[3:])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--num-examples", type=int, default=100, help="examples sampled")
    parser.add_argument("--seconds", type=float, default=3.0, help="steady-state duration")
    parser.add_argument("--note", default="", help="conditions of the run, kept with the figures")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--repeats", type=int, default=2, help="writer runs per size")
    parser.add_argument("--no-hot-swap", action="store_true", help="measure the scale only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from tests.support.penguin import train_penguin_model

    work = Path(tempfile.mkdtemp(prefix="warmup-bench-"))
    results: dict = {"model": "penguin (serving_default + predict_features)", "note": args.note}
    try:
        model_uri = work / "model"
        train_penguin_model(model_uri / "Format-Serving", epochs=5, seed=0)
        results["scale"] = measure_scale(
            model_uri, work, args.sizes, args.num_examples, args.repeats
        )
        if not args.no_hot_swap:
            warmed = work / f"warmed_{args.sizes[0]}"
            results.update(measure_hot_swap(model_uri, warmed, args.seconds))
        print_tables(results)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
