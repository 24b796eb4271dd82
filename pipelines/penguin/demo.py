"""The demo: the whole chain on the penguin data, with TF Serving hot-swapping under traffic.

1. run the pipeline (train -> validate -> warm up -> canary -> push version 1);
2. start the embedded TF-Serving-compatible server on the serving volume;
3. keep a client sending requests while the pipeline runs again with a retrained model, whose
   pusher publishes version 2 and waits until the server reports it AVAILABLE;
4. report the requests sent, the failures (zero is the point), which version answered, and
   where the canary's report is.

It ends with a table of each pipeline run's components (verdict and duration, read from MLMD),
the versions on the volume, the requests answered by each version and where the canary report
and the log are. TFX's, TensorFlow's and the server's logs go to `<workdir>/demo.log` (and to
the terminal with `-v`).

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
from pipelines.penguin.run_table import format_runs_table, pipeline_runs
from tfx_serving_ext.commands._terminal import Terminal, format_seconds, quiet_native_logging

LOG_NAME = "demo.log"


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
    first_version: int = 0

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


class _FollowComponents(logging.Handler):
    """Shows on a step which component LocalDagRunner runs (it logs "Component X is running.")."""

    def __init__(self, step, extra: Callable[[], str] | None = None):
        super().__init__(logging.INFO)
        self.step, self.extra = step, extra

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Component %s is running." and record.args:
            extra = f" · {self.extra()}" if self.extra else ""
            self.step.update(f"{record.args[0]}{extra}")


def _run_pipeline(
    workdir: Path,
    serving_model_dir: Path,
    seed: int,
    server_address: str | None,
    step=None,
    extra: Callable[[], str] | None = None,
):
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipelines.penguin.pipeline import create_pipeline

    follow = _FollowComponents(step, extra) if step is not None else None
    done = threading.Event()
    if follow is not None:
        absl_logger = logging.getLogger("absl")
        absl_logger.addHandler(follow)
        level = min(absl_logger.getEffectiveLevel(), logging.INFO)

        # Something in the run (seen after CsvExampleGen) sets absl's logger back to WARNING,
        # which would silence "Component X is running." in the log and on the display.
        def keep_absl_level() -> None:
            while not done.wait(0.2):
                if absl_logger.level != level:
                    absl_logger.setLevel(level)

        threading.Thread(target=keep_absl_level, name="demo-absl-level", daemon=True).start()
    try:
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
    finally:
        done.set()
        if follow is not None:
            logging.getLogger("absl").removeHandler(follow)


def latest_canary_report(pipeline_root: Path) -> Path | None:
    """Returns the newest ServingCanary report.html under `pipeline_root`, if any."""
    reports = list((pipeline_root / "ServingCanary").glob("*/*/report.html"))
    return max(reports, key=lambda p: int(p.parent.name)) if reports else None


def run_demo(workdir: str | os.PathLike, terminal: Terminal, *, seed: int = 0) -> DemoResult:
    """Runs the demo in `workdir`, one terminal step per stage; returns what it observed.

    Raises:
        RuntimeError: a pipeline run pushed nothing, or the server did not swap versions.
    """
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.publish.volume import list_versions
    from tfx_serving_ext.server import ModelServer, ServerOptions

    started = time.monotonic()
    workdir = Path(workdir).absolute()
    serving_model_dir = workdir / "serving" / "penguin"
    model_name = "penguin"

    with terminal.step("Pipeline run 1: train, validate, warm up, canary, push") as step:
        _run_pipeline(workdir, serving_model_dir, seed, server_address=None, step=step)
        first = list_versions(serving_model_dir) if serving_model_dir.is_dir() else {}
        if not first:
            raise RuntimeError(f"Pipeline run 1 pushed nothing to {serving_model_dir}")
        step.done(f"pushed version {max(first)}")

    options = ServerOptions(
        model_name=model_name,
        model_base_path=str(serving_model_dir),
        file_system_poll_wait_seconds=0.5,
    )
    with ModelServer(options) as server:
        with terminal.step("Embedded TF Serving on the serving volume") as step:
            with ServingClient(server.grpc_address) as client:
                serving = client.wait_until_available(model_name, timeout=120)
            step.done(f"{server.grpc_address} serves version {serving}")

        traffic = _Traffic(server.grpc_address, model_name)
        traffic.start()
        with terminal.step("Pipeline run 2: a retrained model, under live traffic") as step:
            _run_pipeline(
                workdir,
                serving_model_dir,
                seed + 1,
                server.grpc_address,
                step=step,
                extra=lambda: f"{traffic.stats.sent} requests sent",
            )
            step.done(f"pushed version {max(list_versions(serving_model_dir))}")
        with terminal.step("Hot swap under traffic") as step:
            with ServingClient(server.grpc_address) as client:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    served = client.wait_until_available(model_name, timeout=60)
                    if served != serving:
                        break
                    time.sleep(0.2)
            if served == serving:
                traffic.stop()
                raise RuntimeError(
                    f"The server still serves version {serving} after pipeline run 2; versions "
                    f"on the volume: {sorted(list_versions(serving_model_dir))}"
                )
            step.update(f"version {served} answers")
            # Let the client see the new version answer for a moment before stopping it.
            seen_new = time.monotonic() + 10
            while traffic.stats.answered_by[served] < 50 and time.monotonic() < seen_new:
                time.sleep(0.1)
            stats = traffic.stop()
            step.done(f"{serving} -> {served}: {stats.sent} requests, {stats.failed} failed")

    return DemoResult(
        workdir=workdir,
        serving_model_dir=serving_model_dir,
        versions=sorted(list_versions(serving_model_dir)),
        served_version=served,
        traffic=stats,
        canary_report=latest_canary_report(workdir / "pipeline_root"),
        seconds=time.monotonic() - started,
        first_version=serving,
    )


def summary_lines(result: DemoResult, log_path: Path) -> list[str]:
    """Returns the demo's closing table and the facts below it."""
    stats = result.traffic
    try:
        table = format_runs_table(pipeline_runs(result.workdir / "metadata.sqlite"))
    except Exception as exc:  # the table is a courtesy: never fail a good run over it
        table = [f"(no component table: {exc})"]
    answered = ", ".join(f"version {v}: {n}" for v, n in sorted(stats.answered_by.items()))
    lines = [*table, ""]
    lines.append(f"Pushed model: {result.pushed_version_dir}")
    lines.append(f"Serving volume (TF Serving's --model_base_path): {result.serving_model_dir}")
    lines.append(
        f"Versions on the volume: {result.versions}; the server serves {result.served_version}"
    )
    lines.append(
        f"Requests during the hot swap {result.first_version} -> {result.served_version}: "
        f"{stats.sent} sent, {stats.failed} failed; answered by {answered}"
    )
    if result.canary_report:
        lines.append(f"Canary report: {result.canary_report}")
    lines.append(f"Log: {log_path}")
    lines.append(
        f"Finished in {format_seconds(result.seconds)}; everything is under {result.workdir}"
    )
    return lines


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
        help="directory for the pipeline root, MLMD, the serving volume and the log "
        "(default: a new temporary directory, kept after the run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="trainer seed of the first run")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TFX's, TensorFlow's, Beam's and the server's logs on the terminal",
    )
    args = parser.parse_args(argv)
    quiet_native_logging(args.verbose)  # before anything imports TensorFlow

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tfx-serving-ext-demo-")).absolute()
    log_path = workdir / LOG_NAME
    with Terminal(log_path, verbose=args.verbose) as terminal:
        terminal.print(f"The penguin demo in {workdir}")
        try:
            result = run_demo(workdir, terminal, seed=args.seed)
        except Exception:
            terminal.print(f"The demo failed; the whole log is {log_path}")
            return 1
        lines = summary_lines(result, log_path)
    print("\n" + "\n".join(lines), flush=True)
    return 0 if result.traffic.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
