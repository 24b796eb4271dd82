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
    from tfx_serving_ext.serving import volume

    try:
        versions = volume.list_versions(args.base_dir)
    except FileNotFoundError:
        print(f"error: {args.base_dir} does not exist")
        return 2
    ordered = sorted(versions)
    target = args.to if args.to is not None else (ordered[-2] if len(ordered) > 1 else None)
    if target is None or target not in versions:
        print(f"error: nothing to roll back to (versions present: {ordered}, --to {args.to})")
        return 2
    if args.model_config_file:
        from tfx_serving_ext.serving.model_config import drop_labels_on_versions

        # Before the directories go: TF Serving rejects a config labelling an unloaded version.
        newer = {v for v in ordered if v > target}
        dropped = drop_labels_on_versions(args.model_config_file, args.model_name, newer)
        if dropped:
            print(f"dropped labels {dropped} (they pointed at {sorted(newer)})")
    result = volume.rollback_versions(args.base_dir, to_version=target)
    for version, path in sorted(result.archived_to.items()):
        print(f"moved version {version} to {path}")
    print(f"version {result.current_version} is now the newest on {args.base_dir}")
    if not args.server:
        return 0
    from tfx_serving_ext.serving.client import ServingClient, ServingError

    client = ServingClient(args.server, protocol=protocol_of(args))
    try:
        client.wait_until_available(args.model_name, version=target, timeout=args.timeout)
    except ServingError as exc:
        print(f"FAILED: the server did not report version {target} AVAILABLE: {exc}")
        return 1
    print(f"the server reports version {target} AVAILABLE")
    return 0
