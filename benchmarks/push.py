"""Benchmark: our volume push (publish + verification until AVAILABLE) beside the stock TFX Pusher.

For each model (the penguin model and a ~200 MB SavedModel holding one large variable) it times,
in one run and on the same disk:
  - stock:    tfx.components.pusher.executor.Executor.Do (copy to <base>/<unix time> plus the
              archive copy into the PushedModel URI; no verification);
  - ours:     ServingPusher's executor Do (atomic publish, verification on the embedded server
              polling the volume, archive copy into the PushedModel URI);
  - publish:  serving.volume.publish_version alone (copy + fsync + rename);
  - rename→AVAILABLE: from the rename to the server reporting the version AVAILABLE (bounded by
              the poll interval plus the load time).

Then publishing at disk speed (issue 17): publish_version (in a child process, which reports its
own time and peak RSS) beside `cp -a` + `sync` of the same tree, alternating, each started with
nothing dirty in the page cache, for a SavedModel-shaped tree of 200 MB, one of 2 GB (one large
variable shard each) and an asset-heavy model of 5,000 small files. Target: publish <= 1.3x.
Other options: --poll 1.0 (the server's poll interval), --small-files 5000; --disk-only runs
only this comparison and keeps the pusher rows of the previous run in the JSON (and says so).

    .venv/bin/python benchmarks/push.py [--repeats 3] [--big-mb 200] [--huge-mb 2048] [--disk-only]

Prints a table and writes benchmarks/results/push.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).parent / "results" / "push.json"
MODEL = "bench"


def build_big_model(export_dir: Path, megabytes: int) -> Path:
    import tensorflow as tf

    class Big(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = tf.Variable(tf.zeros([megabytes * 1024 * 1024 // 4], tf.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x + self.table[0]}

    module = Big()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def model_artifact(uri: Path, saved_model_dir: Path):
    from tfx.types import standard_artifacts

    shutil.copytree(saved_model_dir, uri / "Format-Serving")
    artifact = standard_artifacts.Model()
    artifact.uri = str(uri)
    return artifact


def blessed(work: Path):
    from tfx.types import standard_artifacts

    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(work / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    return blessing


def pushed_model(uri: Path):
    from tfx.types import standard_artifacts

    artifact = standard_artifacts.PushedModel()
    artifact.uri = str(uri)
    uri.mkdir(parents=True)
    return artifact


def time_stock(work: Path, model, repeats: int) -> list[float]:
    from tfx.components.pusher import executor as stock

    base = work / "stock_serving"
    times = []
    for i in range(repeats):
        # The stock Pusher names versions int(time.time()) and silently skips the copy when two
        # pushes share a second: start each push in a fresh second so it really copies.
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        out = pushed_model(work / f"stock_pushed_{i}")
        props = {"push_destination": json.dumps({"filesystem": {"base_directory": str(base)}})}
        started = time.perf_counter()
        stock.Executor().Do({"model": [model], "model_blessing": [blessed(work)]},
                            {"pushed_model": [out]}, props)  # fmt: skip
        times.append(time.perf_counter() - started)
        assert out.get_int_custom_property("pushed") == 1
    assert len([p for p in base.iterdir() if p.name.isdigit()]) == repeats
    return times


def time_ours(work: Path, model, saved_model_dir: Path, repeats: int, poll: float) -> dict:
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.components.serving_pusher import executor as ours
    from tfx_serving_ext.publish import volume
    from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume
    from tfx_serving_ext.server import ModelServer, ServerOptions

    base = work / "our_serving"
    volume.publish_version(saved_model_dir, base)  # what is being served before the pushes
    server = ModelServer(
        ServerOptions(
            model_name=MODEL,
            model_base_path=str(base),
            port=0,
            rest_api_port=0,
            file_system_poll_wait_seconds=poll,
        )  # fmt: skip
    )
    server.start()
    try:
        with ServingClient(server.grpc_address) as client:
            client.wait_until_available(MODEL, version=1, timeout=300)
            config = VolumePushConfig(
                base_directory=str(base),
                model_name=MODEL,
                server_address=server.grpc_address,
                verify_timeout_seconds=300,
                keep_versions=2,
            )
            executor_times, available = [], []
            for i in range(repeats):
                out = pushed_model(work / f"our_pushed_{i}")
                props = {"destination": "serving_volume", "push_destination": config.to_json()}
                started = time.perf_counter()
                ours.Executor().Do({"model": [model], "model_blessing": [blessed(work)]},
                                   {"pushed_model": [out]}, props)  # fmt: skip
                executor_times.append(time.perf_counter() - started)
                assert out.get_string_custom_property("verification") == "available"
            push_times = []
            for _ in range(repeats):
                started = time.perf_counter()
                result = push_to_volume(saved_model_dir, config, client=client)
                push_times.append(time.perf_counter() - started)
                assert result.pushed, result.message
                available.append(result.available_seconds)
        publish_times = []
        scratch = work / "publish_only"
        for _ in range(repeats):
            publish_times.append(volume.publish_version(saved_model_dir, scratch).copy_seconds)
    finally:
        server.stop()
    return {
        "executor": executor_times,
        "push": push_times,
        "publish": publish_times,
        "rename_to_available": available,
    }


# publish_version in a fresh process: its time and its own peak RSS, as JSON on stdout.
PUBLISH_CHILD = """
import json, resource, sys, time
from tfx_serving_ext.publish.volume import publish_version
started = time.perf_counter()
published = publish_version(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - started
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_kb / 1024,
                  "files": published.files_copied, "bytes": published.bytes_copied}))
"""


def write_random_file(path: Path, size: int) -> None:
    """Writes `size` incompressible bytes in 4 MiB chunks (memory stays flat)."""
    chunk = os.urandom(4 * 1024 * 1024)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            # Vary each chunk cheaply so no filesystem could deduplicate them.
            piece = chunk[: min(left, len(chunk))]
            f.write(left.to_bytes(8, "little") + piece[8:])
            left -= len(piece)


def build_large_tree(root: Path, megabytes: int) -> Path:
    """Returns a SavedModel-shaped tree: small graph and index, one variable shard of the size."""
    (root / "variables").mkdir(parents=True)
    write_random_file(root / "saved_model.pb", 64 * 1024)
    write_random_file(root / "fingerprint.pb", 64)
    write_random_file(root / "variables" / "variables.index", 4096)
    write_random_file(root / "variables" / "variables.data-00000-of-00001", megabytes * 1024**2)
    return root


def build_small_files_tree(root: Path, files: int) -> Path:
    """Returns an asset-heavy model: a graph, a variable shard and `files` small assets.

    Asset sizes run 1-16 KiB (vocabularies, lookup tables), 100 to a directory.
    """
    build_large_tree(root, 4)
    for i in range(files):
        directory = root / "assets" / f"table_{i // 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        write_random_file(directory / f"part_{i:05d}.txt", 1024 * (1 + (i * 7) % 16))
    return root


def time_publish_vs_cp(source: Path, scratch: Path, repeats: int) -> dict:
    """Returns publish and `cp -a` + `sync` times (alternating, median taken by the caller)."""
    publish, cp_sync, rss = [], [], []
    for i in range(repeats):
        for way in ("cp", "publish") if i % 2 == 0 else ("publish", "cp"):
            subprocess.run(["sync"], check=True)  # start with nothing dirty
            if way == "cp":
                started = time.perf_counter()
                subprocess.run(["cp", "-a", str(source), str(scratch / "cp_copy")], check=True)
                subprocess.run(["sync"], check=True)
                cp_sync.append(time.perf_counter() - started)
                shutil.rmtree(scratch / "cp_copy")
            else:
                out = subprocess.run(
                    [sys.executable, "-c", PUBLISH_CHILD, str(source), str(scratch / "volume")],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                publish.append(result["seconds"])
                rss.append(result["peak_rss_mb"])
                shutil.rmtree(scratch / "volume")
    return {"publish": publish, "cp_sync": cp_sync, "publish_peak_rss_mb": rss}


def disk_speed_rows(tmp: Path, repeats: int, sizes_mb: list[int], small_files: int) -> list[dict]:
    trees = {f"{mb} MB": (lambda root, mb=mb: build_large_tree(root, mb)) for mb in sizes_mb}
    trees[f"{small_files} small files"] = lambda root: build_small_files_tree(root, small_files)
    rows = []
    for name, build in trees.items():
        work = tmp / "disk" / name.replace(" ", "_")
        source = build(work / "model")
        files = [p for p in source.rglob("*") if p.is_file()]
        times = time_publish_vs_cp(source, work, repeats)
        publish, cp_sync = statistics.median(times["publish"]), statistics.median(times["cp_sync"])
        rows.append(
            {
                "model": name,
                "files": len(files),
                "size_mb": sum(p.stat().st_size for p in files) / 1e6,
                "publish_s": publish,
                "cp_a_sync_s": cp_sync,
                "ratio": publish / cp_sync,
                "publish_peak_rss_mb": max(times["publish_peak_rss_mb"]),
                "raw": times,
            }
        )
        shutil.rmtree(work)
    return rows


def print_disk_rows(rows: list[dict], repeats: int) -> None:
    print(f"publish_version vs cp -a + sync, median of {repeats} runs, {os.cpu_count()} cores")
    print(
        f"{'model':<18} {'files':>6} {'MB':>8} {'publish s':>10} {'cp -a+sync s':>13} "
        f"{'ratio':>6} {'peak RSS MB':>12}"
    )
    for r in rows:
        print(
            f"{r['model']:<18} {r['files']:>6} {r['size_mb']:>8.1f} {r['publish_s']:>10.3f} "
            f"{r['cp_a_sync_s']:>13.3f} {r['ratio']:>6.2f} {r['publish_peak_rss_mb']:>12.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--poll", type=float, default=1.0, help="server file system poll (s)")
    parser.add_argument("--huge-mb", type=int, default=2048, help="the second large tree (MB)")
    parser.add_argument("--small-files", type=int, default=5000)
    parser.add_argument(
        "--disk-only", action="store_true", help="only publish vs cp -a + sync (keeps old rows)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        disk_rows = disk_speed_rows(Path(tmp), args.repeats, [args.big_mb, args.huge_mb],
                                    args.small_files)  # fmt: skip
    print_disk_rows(disk_rows, args.repeats)
    disk = {"cores": os.cpu_count(), "repeats": args.repeats, "rows": disk_rows}
    if args.disk_only:
        previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        previous["publish_vs_cp"] = disk
        previous["pusher_rows_from_an_earlier_run"] = True
        RESULTS.write_text(json.dumps(previous, indent=2))
        print(f"wrote {RESULTS}")
        return

    from tests.support.penguin import train_penguin_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        tmp = Path(tmp)
        models = {
            "penguin": train_penguin_model(tmp / "penguin_model", epochs=5, seed=0),
            f"big-{args.big_mb}MB": build_big_model(tmp / "big_model", args.big_mb),
        }
        for name, saved_model_dir in models.items():
            work = tmp / name
            work.mkdir()
            model = model_artifact(work / "model", saved_model_dir)
            stock = time_stock(work, model, args.repeats)
            ours = time_ours(work, model, saved_model_dir, args.repeats, args.poll)
            rows.append(
                {
                    "model": name,
                    "size_mb": tree_bytes(saved_model_dir) / 1e6,
                    "stock_pusher_do_s": statistics.median(stock),
                    "our_pusher_do_s": statistics.median(ours["executor"]),
                    "our_push_verified_s": statistics.median(ours["push"]),
                    "our_publish_s": statistics.median(ours["publish"]),
                    "rename_to_available_s": statistics.median(ours["rename_to_available"]),
                    "raw": {"stock": stock, **ours},
                }
            )
            shutil.rmtree(work)

    header = (
        f"{'model':<12} {'MB':>7} {'stock Do':>9} {'ours Do':>9} {'push+verify':>12} "
        f"{'publish':>8} {'rename→AVAILABLE':>17}"
    )
    print(f"median of {args.repeats} runs, seconds; server poll interval {args.poll} s")
    print(header)
    for r in rows:
        print(
            f"{r['model']:<12} {r['size_mb']:>7.1f} {r['stock_pusher_do_s']:>9.3f} "
            f"{r['our_pusher_do_s']:>9.3f} {r['our_push_verified_s']:>12.3f} "
            f"{r['our_publish_s']:>8.3f} {r['rename_to_available_s']:>17.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "repeats": args.repeats,
                "poll_seconds": args.poll,
                "cores": os.cpu_count(),
                "rows": rows,
                "publish_vs_cp": disk,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
