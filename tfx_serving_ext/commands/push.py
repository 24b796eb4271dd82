"""`tfx-serving-ext push`: publish a model on a serving volume and verify it on a server."""

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
    versions_on,
)
from tfx_serving_ext.commands._fleet_cli import (
    FleetDisplay,
    add_fleet_arg,
    add_watch_args,
    print_fleet_result,
    progressive_settings,
)
from tfx_serving_ext.commands._terminal import Terminal, default_log_path
from tfx_serving_ext.commands._volume_args import add_server_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="publish a SavedModel as a new version on a serving volume (atomic, verified)",
        description=(
            "Copies MODEL_DIR (a SavedModel, or a Model artifact in the TFX Trainer layout) "
            "into BASE_DIR under a new version number, atomically; with --server waits until "
            "the server reports it AVAILABLE and removes it again if it fails to load."
        ),
        epilog=exit_codes_epilog(
            ok="pushed (and AVAILABLE on --server)",
            failed_verification="the server did not serve it (failed to load, timed out, "
            "unreachable, or --watch rolled it back);\n     the version is removed again unless "
            "--no-rollback-on-failure",
            refused="refused: not a loadable model, bad arguments (a --fleet address without "
            "its port, a --watch\n     with nothing to look at) or model config; nothing "
            "published",
            io_error="I/O error (disk full, permission denied, read-only volume): fix the "
            "storage and push again;\n     before publishing: nothing published, no temporary "
            "file left; after it (writing the model\n     config, retention): the error line "
            "says which versions the volume holds now",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the model to push")
    parser.add_argument("base_dir", metavar="BASE_DIR", help="the serving volume")
    add_server_args(parser)
    add_fleet_arg(parser)
    add_watch_args(parser)
    parser.add_argument(
        "--keep", type=int, default=0, help="keep only the newest N versions (default: all)"
    )
    parser.add_argument("--model-config-file", help="ModelServerConfig to set labels in")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="LABEL=TARGET",
        help="set a version label once AVAILABLE; TARGET is new, previous or a version "
        "(repeatable; needs --server and --model-config-file)",
    )
    parser.add_argument(
        "--no-rollback-on-failure",
        action="store_true",
        help="leave a version that failed to load on the volume",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Pushes; returns 0 when pushed (and verified), else the code the epilog lists."""
    # The terminal is set up before TensorFlow loads: its C++ start-up lines go to the log.
    log_path = getattr(args, "log_file", None) or default_log_path("push")
    with Terminal(log_path, verbose=getattr(args, "verbose", False), announce_log=True) as terminal:
        return _push(args, terminal)


def _push(args: argparse.Namespace, terminal: Terminal) -> int:
    from tfx_serving_ext.protocol.model_config import ModelConfigError
    from tfx_serving_ext.protocol.saved_model import SavedModelError, find_serving_model_dir
    from tfx_serving_ext.publish.fleet import FleetError
    from tfx_serving_ext.publish.push import PushConfigError, VolumePushConfig, push_to_volume
    from tfx_serving_ext.publish.volume import UnsafeModelPath, VolumeError

    refusals = (
        SavedModelError,
        PushConfigError,
        ModelConfigError,
        UnsafeModelPath,
        VolumeError,
        FleetError,
    )
    try:
        labels = dict(item.split("=", 1) for item in args.label)
    except ValueError:
        terminal.print(f"error: --label takes LABEL=TARGET, got {args.label}")
        return EXIT_REFUSED
    if Path(args.base_dir).exists() and not Path(args.base_dir).is_dir():
        terminal.print(f"error: {args.base_dir} is not a directory: give the serving volume")
        return EXIT_REFUSED
    before = versions_on(args.base_dir)
    try:
        model_dir = find_serving_model_dir(args.model_dir)
        config = VolumePushConfig(
            base_directory=args.base_dir,
            model_name=args.model_name,
            model_config_file=args.model_config_file,
            keep_versions=args.keep,
            version_labels=labels,
            server_address=args.server,
            verify_timeout_seconds=args.timeout,
            rollback_on_failure=not args.no_rollback_on_failure,
            **progressive_settings(args),  # and server_protocol
        )
    except refusals as exc:
        terminal.print(f"error: {exc}")
        return EXIT_REFUSED
    verify = f", waiting until {args.server} serves it" if args.server else ""
    title = f"Publishing a new version on {args.base_dir}{verify}"
    if config.fleet:  # short: the live line after it names every replica
        title = "Pushing to every replica of the fleet"
    if config.watch_seconds:
        title += f", then watching it for {config.watch_seconds:g}s"
    with terminal.step(title) as step:
        display = FleetDisplay(terminal, step)

        def copied(done: int, total: int) -> None:
            step.update(f"copied {done / 1e6:.1f} of {total / 1e6:.1f} MB")

        try:
            result = push_to_volume(
                model_dir,
                config,
                progress=copied,
                on_replica=display.replica_changed,
                on_watch=display.watch_sampled,
            )
        except refusals as exc:
            step.fail("refused")
            error, code = str(exc), EXIT_REFUSED
        except OSError as exc:
            step.fail("I/O error")
            error, code = (
                io_error_line(
                    exc,
                    args.base_dir,
                    before,
                    unchanged="no new version is on the volume",
                    again="push again",
                ),
                EXIT_IO_ERROR,
            )
        else:
            if result.pushed:
                step.done(f"version {result.version}")
            else:
                step.fail(result.verification)
            error, code = None, EXIT_OK
    if error is not None:
        terminal.print(f"error: {error}")
        return code
    print(f"{'pushed' if result.pushed else 'FAILED'}: {result.message}")
    if result.version is not None and result.pushed:
        print(f"version {result.version} at {result.destination}")
    if result.labels:
        print(f"labels: {result.labels}")
    if result.removed_versions:
        print(f"removed by retention: {result.removed_versions}")
    print_fleet_result(result)
    return EXIT_OK if result.pushed else EXIT_FAILED_VERIFICATION
