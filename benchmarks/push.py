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

    .venv/bin/python benchmarks/push.py [--repeats 3] [--big-mb 200] [--poll 1.0]

Prints a table and writes benchmarks/results/push.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--poll", type=float, default=1.0, help="server file system poll (s)")
    args = parser.parse_args()

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
        json.dumps({"repeats": args.repeats, "poll_seconds": args.poll, "rows": rows}, indent=2)
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
