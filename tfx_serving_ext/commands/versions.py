"""`tfx-serving-ext versions`: the versions on a serving volume, and which ones a server serves."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from tfx_serving_ext.commands._exit_codes import (
    EXIT_IO_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    HelpFormatter,
    describe_io_error,
    exit_codes_epilog,
    print_error,
)
from tfx_serving_ext.commands._fleet_cli import add_fleet_arg, print_fleet_versions
from tfx_serving_ext.commands._volume_args import add_server_args, protocol_of


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "versions",
        help="list the versions on a serving volume (and their state on a server)",
        description=(
            "Lists the version directories under BASE_DIR (TF Serving's model_base_path), the "
            "next version a push would take, and with --server the state of each version there."
        ),
        epilog=exit_codes_epilog(
            ok="listed (a server that cannot be asked is a warning)",
            refused="refused: no BASE_DIR, an unreadable high-water mark or model config",
            io_error="I/O error: the volume cannot be read (permission denied, failing disk)",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("base_dir", metavar="BASE_DIR", help="the serving volume")
    add_server_args(parser)
    add_fleet_arg(parser)
    parser.add_argument(
        "--model-config-file", help="text-format ModelServerConfig to show labels from"
    )
    parser.set_defaults(func=run)


def _size(path: Path) -> int:
    total = 0
    for entry in path.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # retention may archive it meanwhile
            if entry.is_file():
                total += entry.stat().st_size
    return total


def run(args: argparse.Namespace) -> int:
    """Lists the versions; returns 0, else the code the epilog lists."""
    from tfx_serving_ext.protocol.model_config import ModelConfigError
    from tfx_serving_ext.publish.fleet import FleetError
    from tfx_serving_ext.publish.volume import VolumeError

    if not Path(args.base_dir).is_dir():
        print_error(f"{args.base_dir} is not a directory: give the serving volume (BASE_DIR)")
        return EXIT_REFUSED
    try:
        print_table(args)
    except (VolumeError, ModelConfigError, FleetError) as exc:
        print_error(str(exc))
        return EXIT_REFUSED
    except OSError as exc:
        print_error(f"I/O error: {describe_io_error(exc)}: cannot read {args.base_dir}")
        return EXIT_IO_ERROR
    return EXIT_OK


def print_table(args: argparse.Namespace) -> None:
    """Prints the versions on the volume with their size, state on the server and labels."""
    from tfx_serving_ext.publish import volume

    versions = volume.list_versions(args.base_dir)
    states: dict[int, str] = {}
    if args.server:
        from tfx_serving_ext.client.client import ServingClient, ServingError

        try:
            with ServingClient(args.server, protocol=protocol_of(args)) as client:
                states = {s.version: s.state for s in client.model_status(args.model_name)}
        except ServingError as exc:
            print(f"warning: no status for {args.model_name!r} from {args.server}: {exc}")
    labels: dict[int, list[str]] = {}
    if args.model_config_file:
        from tfx_serving_ext.protocol.model_config import read_version_labels

        for label, version in read_version_labels(args.model_config_file, args.model_name).items():
            labels.setdefault(version, []).append(label)
    if args.fleet:
        print_fleet_versions(args, versions, labels, _size)
        print(f"next version: {volume.next_version(args.base_dir)}")
        return

    rows = [("VERSION", "DIRECTORY", "SIZE", "SERVER", "LABELS")]
    for version in sorted(set(versions) | set(states), reverse=True):
        path = versions.get(version)
        rows.append(
            (
                str(version),
                path.name if path else "(not on disk)",
                f"{_size(path) / 1e6:.1f} MB" if path else "",
                states.get(version, "-" if args.server else ""),
                ",".join(sorted(labels.get(version, []))),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"next version: {volume.next_version(args.base_dir)}")
