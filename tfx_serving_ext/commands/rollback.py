"""`tfx-serving-ext rollback`: make TF Serving go back to an older version on a serving volume."""

from __future__ import annotations

import argparse
from pathlib import Path

from tfx_serving_ext.commands._exit_codes import (
    EXIT_FAILED_VERIFICATION,
    EXIT_IO_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    HelpFormatter,
    exit_codes_epilog,
    io_error_line,
    print_error,
    versions_on,
)
from tfx_serving_ext.commands._volume_args import add_server_args, protocol_of


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="move the newest version(s) aside so the server goes back to an older one",
        description=(
            "Moves every version newer than --to (default: the one below the newest) into "
            "BASE_DIR/.tfx_serving_ext/archive/ (kept, so it can be undone by re-pushing); TF "
            "Serving then loads the highest remaining version. Their numbers are never reused."
        ),
        epilog=exit_codes_epilog(
            ok="rolled back (and served by --server)",
            failed_verification="rolled back on the volume, but --server did not serve the "
            "version within --timeout",
            refused="refused: no such version, nothing to roll back to, no BASE_DIR, bad model "
            "config;\n     nothing moved",
            io_error="I/O error (disk full, permission denied, read-only volume); nothing moved",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("base_dir", metavar="BASE_DIR", help="the serving volume")
    parser.add_argument("--to", type=int, metavar="VERSION", help="the version to go back to")
    add_server_args(parser)
    parser.add_argument(
        "--model-config-file",
        help="ModelServerConfig whose labels on the removed versions are dropped first",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Rolls back; returns 0 when done, else the code the epilog lists."""
    from tfx_serving_ext.protocol.errors import ServingError
    from tfx_serving_ext.protocol.model_config import ModelConfigError
    from tfx_serving_ext.publish.push import rollback_volume
    from tfx_serving_ext.publish.volume import VolumeError

    if not Path(args.base_dir).is_dir():
        print_error(f"{args.base_dir} is not a directory: give the serving volume (BASE_DIR)")
        return EXIT_REFUSED
    before = versions_on(args.base_dir)
    client = None
    if args.server:
        from tfx_serving_ext.client.client import ServingClient

        client = ServingClient(args.server, protocol=protocol_of(args))
    try:
        result = rollback_volume(
            args.base_dir,
            to_version=args.to,
            model_name=args.model_name,
            model_config_file=args.model_config_file,
            client=client,
            timeout=args.timeout,
        )
    except (VolumeError, ModelConfigError) as exc:
        print_error(str(exc))
        return EXIT_REFUSED
    except ServingError as exc:
        print(f"FAILED: the server did not go back: {exc}")
        return EXIT_FAILED_VERIFICATION
    except OSError as exc:
        print_error(
            io_error_line(
                exc, args.base_dir, before, unchanged="nothing was moved", again="roll back again"
            )
        )
        return EXIT_IO_ERROR
    finally:
        if client is not None:
            client.close()
    if result.dropped_labels:
        print(f"dropped labels {result.dropped_labels} (they pointed at removed versions)")
    for version, path in sorted(result.archived_to.items()):
        print(f"moved version {version} to {path}")
    print(f"version {result.current_version} is now the newest on {args.base_dir}")
    if result.verified:
        print(f"the server serves version {result.current_version}")
    return EXIT_OK
