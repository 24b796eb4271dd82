"""`tfx-serving-ext demo`: the whole chain on the bundled penguin data."""

from __future__ import annotations

import argparse
import tempfile


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the penguin pipeline end to end and push the model to a serving directory",
        description=(
            "Runs the example penguin pipeline (CsvExampleGen -> trainer -> push) under "
            "LocalDagRunner and prints where the pushed model is."
        ),
    )
    parser.add_argument(
        "--workdir",
        help="directory for the pipeline root, MLMD and the serving volume "
        "(default: a new temporary directory, kept after the run)",
    )
    parser.add_argument("--seed", type=int, default=0, help="trainer seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.penguin.demo import run_demo

    workdir = args.workdir or tempfile.mkdtemp(prefix="tfx-serving-ext-demo-")
    result = run_demo(workdir, seed=args.seed)
    print(f"Pushed model: {result.pushed_version_dir}")
    print(f"Serving directory (TF Serving --model_base_path): {result.serving_model_dir}")
    print(f"Finished in {result.seconds:.0f} s; everything is under {result.workdir}")
    return 0
