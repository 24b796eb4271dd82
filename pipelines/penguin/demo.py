"""The demo: the whole chain on the penguin data, with TF Serving hot-swapping under traffic.

1. run the pipeline (train -> validate -> warm up -> canary -> push version 1);
2. start the embedded TF-Serving-compatible server on the serving volume;
3. keep a client sending requests while the pipeline runs again with a retrained model, whose
   pusher publishes version 2 and waits until the server reports it AVAILABLE;
4. report the requests sent, the failures (zero is the point), which version answered, and
   where the canary's report is.

Run it with `make demo`, or `python -m pipelines.penguin.demo [--workdir DIR] [-v]` from the
repository's root.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.penguin import DATA_DIR
from pipelines.penguin import model as penguin_model

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class TrafficStats:
    """What the demo's client saw while the server hot-swapped."""

    sent: int = 0
    failed: int = 0
    answered_by: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo left things and what it observed."""

    workdir: Path
    serving_model_dir: Path
    versions: list[int]
    served_version: int
    traffic: TrafficStats
    canary_report: Path | None
    seconds: float

    @property
    def pushed_version_dir(self) -> Path:
        return self.serving_model_dir / str(self.served_version)


class _Traffic(threading.Thread):
    """Sends predict requests one after another until stopped (bounded by `max_requests`)."""

    def __init__(self, address: str, model_name: str, max_requests: int = 200_000):
        super().__init__(name="demo-traffic", daemon=True)
        self.address, self.model_name, self.max_requests = address, model_name, max_requests
        self.stats = TrafficStats()
        self._stop_event = threading.Event()

    def run(self) -> None:
        from tfx_serving_ext.client.client import ServingClient, ServingError

        features, _ = penguin_model.read_csv(DATA_DIR / "penguins.csv")
        with ServingClient(self.address, timeout=30.0) as client:
            while not self._stop_event.is_set() and self.stats.sent < self.max_requests:
                row = features[self.stats.sent % len(features)]
                self.stats.sent += 1
                try:
                    inputs = {
                        key: [value]
                        for key, value in zip(penguin_model.FEATURE_KEYS, row, strict=True)
                    }
                    result = client.predict(
                        self.model_name,
                        inputs,
                        signature_name=penguin_model.FEATURES_SIGNATURE,
                    )
                    self.stats.answered_by[result.version] += 1
                except ServingError as exc:
                    self.stats.failed += 1
                    self.stats.errors.append(str(exc))
                time.sleep(0.002)

    def stop(self) -> TrafficStats:
        self._stop_event.set()
        self.join(timeout=60)
        return self.stats


def _run_pipeline(workdir: Path, serving_model_dir: Path, seed: int, server_address: str | None):
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines.penguin.pipeline import create_pipeline

    LocalDagRunner().run(
        create_pipeline(
            pipeline_root=str(workdir / "pipeline_root"),
            data_root=str(DATA_DIR),
            serving_model_dir=str(serving_model_dir),
            metadata_path=str(workdir / "metadata.sqlite"),
            seed=seed,
            server_address=server_address,
        )
    )


def latest_canary_report(pipeline_root: Path) -> Path | None:
    """Returns the newest ServingCanary report.html under `pipeline_root`, if any."""
    reports = list((pipeline_root / "ServingCanary").glob("*/*/report.html"))
    return max(reports, key=lambda p: int(p.parent.name)) if reports else None


def run_demo(
    workdir: str | os.PathLike, *, seed: int = 0, progress: Progress | None = None
) -> DemoResult:
    """Runs the demo in `workdir`; returns what it pushed and what the client saw.

    Raises:
        RuntimeError: a pipeline run pushed nothing, or the server did not swap versions.
    """
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.publish.volume import list_versions
    from tfx_serving_ext.server import ModelServer, ServerOptions

    say = progress or logger.info
    started = time.monotonic()
    workdir = Path(workdir).absolute()
    serving_model_dir = workdir / "serving" / "penguin"
    model_name = "penguin"

    say(f"[1/4] Pipeline run 1: train, validate, warm up, canary, push (in {workdir})")
    _run_pipeline(workdir, serving_model_dir, seed, server_address=None)
    first = list_versions(serving_model_dir) if serving_model_dir.is_dir() else {}
    if not first:
        raise RuntimeError(f"Pipeline run 1 pushed nothing to {serving_model_dir}; see the log.")

    options = ServerOptions(
        model_name=model_name,
        model_base_path=str(serving_model_dir),
        file_system_poll_wait_seconds=0.5,
    )
    with ModelServer(options) as server:
        with ServingClient(server.grpc_address) as client:
            serving = client.wait_until_available(model_name, timeout=120)
        say(f"[2/4] Embedded TF Serving on {server.grpc_address} serves version {serving}")

        traffic = _Traffic(server.grpc_address, model_name)
        traffic.start()
        say("[3/4] Pipeline run 2 with a retrained model while a client keeps sending requests")
        _run_pipeline(workdir, serving_model_dir, seed + 1, server_address=server.grpc_address)
        with ServingClient(server.grpc_address) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                served = client.wait_until_available(model_name, timeout=60)
                if served != serving:
                    break
                time.sleep(0.2)
        # Let the client see the new version answer for a moment before stopping it.
        seen_new = time.monotonic() + 10
        while traffic.stats.answered_by[served] < 50 and time.monotonic() < seen_new:
            time.sleep(0.1)
        stats = traffic.stop()

    versions = sorted(list_versions(serving_model_dir))
    if served == serving:
        raise RuntimeError(
            f"The server still serves version {serving} after pipeline run 2; versions on the "
            f"volume: {versions}. See the pusher's and the canary's log above."
        )
    result = DemoResult(
        workdir=workdir,
        serving_model_dir=serving_model_dir,
        versions=versions,
        served_version=served,
        traffic=stats,
        canary_report=latest_canary_report(workdir / "pipeline_root"),
        seconds=time.monotonic() - started,
    )
    say(
        f"[4/4] Hot swap {serving} -> {served}: {stats.sent} requests, {stats.failed} failed, "
        f"answered by versions {dict(sorted(stats.answered_by.items()))}"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Runs the demo from the command line; returns 0 when no request failed during the swap."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.penguin.demo",
        description=(
            "Runs the example penguin pipeline (train -> SignatureValidator -> "
            "WarmupRequestWriter -> ServingCanary -> ServingPusher) under LocalDagRunner, serves "
            "the pushed model with the embedded TF-Serving-compatible server, runs the pipeline "
            "again with a retrained model while a client keeps sending requests, and reports "
            "the hot swap and where the canary report is."
        ),
    )
    parser.add_argument(
        "--workdir",
        help="directory for the pipeline root, MLMD and the serving volume "
        "(default: a new temporary directory, kept after the run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="trainer seed of the first run")
    parser.add_argument("-v", "--verbose", action="store_true", help="show TFX's and Beam's logs")
    args = parser.parse_args(argv)

    from rich.console import Console

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        # TFX and Beam narrate every step at INFO; keep the demo's own progress readable.
        for noisy in ("absl", "apache_beam", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger().setLevel(logging.WARNING)

    console = Console(stderr=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfx-serving-ext-demo-")
    with console.status("Starting…") as status:

        def progress(message: str) -> None:
            console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")
            status.update(message.split("] ", 1)[-1] + " …")

        result = run_demo(workdir, seed=args.seed, progress=progress)
    stats = result.traffic
    print(f"Pushed model: {result.pushed_version_dir}")
    print(f"Serving directory (TF Serving --model_base_path): {result.serving_model_dir}")
    print(f"Versions on the volume: {result.versions}; the server serves {result.served_version}")
    print(
        f"Requests during the hot swap: {stats.sent} sent, {stats.failed} failed; answered by "
        + ", ".join(f"version {v}: {n}" for v, n in sorted(stats.answered_by.items()))
    )
    if result.canary_report:
        print(f"Canary report: {result.canary_report}")
    print(f"Finished in {result.seconds:.0f} s; everything is under {result.workdir}")
    return 0 if stats.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
