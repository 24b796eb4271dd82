"""`tfx-serving-ext demo`: the whole chain on the bundled penguin data, embedded server."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole chain on the penguin data and watch TF Serving hot-swap",
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipelines.penguin.demo import run_demo

    console = Console(stderr=True)
    if not args.verbose:
        # TFX and Beam narrate every step at INFO; keep the demo's own progress readable.
        # absl also warns once per resolver query that TFX ignores a property predicate.
        for noisy in ("absl", "apache_beam", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger().setLevel(logging.WARNING)

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
