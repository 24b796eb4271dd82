"""`tfx-serving-ext rollback`: make TF Serving go back to an older version on a serving volume."""

from __future__ import annotations

import argparse

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
    from tfx_serving_ext.protocol.errors import ServingError
    from tfx_serving_ext.publish.push import rollback_volume
    from tfx_serving_ext.publish.volume import VolumeError

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
    except (VolumeError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    except ServingError as exc:
        print(f"FAILED: the server did not go back: {exc}")
        return 1
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
    return 0
