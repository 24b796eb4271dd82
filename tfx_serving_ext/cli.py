"""The `tfx-serving-ext` command.

Each subcommand lives in its own module under `tfx_serving_ext.commands` and exposes
`add_parser(subparsers)`, which registers the subcommand and sets `func` (called with the
parsed arguments, returning an exit code). Modules are discovered, so adding a command never
touches this file. Commands import their heavy dependencies (TensorFlow, TFX) inside `func`,
so `--help` and `--version` stay fast.

The commands a person waits for (`canary`, `push`, `serve`) own the terminal through
`commands._terminal.Terminal`: one progress line per step, the logs in a file named at the end
(`--log-file`), shown on the terminal only with `-v`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from tfx_serving_ext import __version__, commands
from tfx_serving_ext.commands._terminal import quiet_native_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser with every discovered subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="tfx-serving-ext",
        description="Validate, warm up, canary and push TensorFlow models to TF Serving.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the logs (TFX, TensorFlow, the model server) on the terminal, with debug",
    )
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        help="where canary, push and serve write their logs (default: in the --output "
        "directory for canary, else a new file in the temporary directory)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    quiet_native_logging(args.verbose)  # before a command imports TensorFlow
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
