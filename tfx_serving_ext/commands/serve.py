"""`tfx-serving-ext serve`: the embedded model server, with tensorflow_model_server's flags.

The server's log goes to a file (`--log-file`, named when the server starts and stops) or, with
-v, to the terminal; the terminal shows the addresses, then one line whenever a version of a
model changes state (LOADING, AVAILABLE, END), and on a TTY a live line of what is served.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from tfx_serving_ext.commands._serve_flags import (
    add_flags,
    own_flag_values,
    saved_model_tags,
    warnings_for,
)
from tfx_serving_ext.commands._terminal import Terminal, default_log_path

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    """Registers the `serve` subcommand with every tensorflow_model_server flag."""
    p = subparsers.add_parser(
        "serve",
        help="run the embedded TF-Serving-compatible model server (tensorflow_model_server flags)",
        description="Serve SavedModels over TF Serving's gRPC and REST APIs. Flags are "
        "tensorflow_model_server's (all of them are accepted; GPU/TPU/TFLite/XLA flags and "
        "the few not implemented here are named in a warning); --host (ours) defaults to "
        "127.0.0.1.",
        allow_abbrev=False,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serves until SIGTERM or SIGINT; returns the exit code (0 after --version)."""
    if args.version:
        print(version_text(), flush=True)
        return 0
    # The terminal is set up before TensorFlow loads: its C++ start-up lines go to the log.
    log_path = getattr(args, "log_file", None) or default_log_path("serve")
    with Terminal(log_path, verbose=getattr(args, "verbose", False)) as terminal:
        terminal.print(f"log: {terminal.log_path}")
        code = _serve(args, terminal)
        terminal.print(f"log: {terminal.log_path}")
    return code


def _serve(args: argparse.Namespace, terminal: Terminal) -> int:
    from tfx_serving_ext.protocol.errors import ServingError
    from tfx_serving_ext.protocol.model_config import ModelConfigError
    from tfx_serving_ext.server import ModelServer, ServerOptions

    if not args.model_config_file and not args.model_base_path:
        terminal.print("serve: give --model_base_path (with --model_name) or --model_config_file")
        return 2
    for warning in warnings_for(args):
        logger.warning("%s", warning)
        terminal.print(f"serve: warning: {warning}")
    intra, inter = args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism
    if args.tensorflow_session_parallelism > 0 and intra <= 0 and inter <= 0:
        intra = inter = args.tensorflow_session_parallelism
    options = ServerOptions(
        model_name="" if args.model_config_file else args.model_name,
        model_base_path="" if args.model_config_file else args.model_base_path,
        model_config_file=args.model_config_file,
        port=args.port,
        rest_api_port=args.rest_api_port,
        enable_rest=args.rest_api_port != 0,
        host=args.host,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        enable_model_warmup=args.enable_model_warmup,
        num_request_iterations_for_warmup=args.num_request_iterations_for_warmup,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        max_num_load_retries=args.max_num_load_retries,
        load_retry_interval_seconds=max(0.0, args.load_retry_interval_micros / 1e6),
        # As tensorflow_model_server: the ports open once the initial models are AVAILABLE.
        wait_for_initial_models=True,
        grpc_max_workers=args.grpc_max_threads,
        rest_max_workers=args.rest_api_num_threads,
        grpc_socket_path=args.grpc_socket_path,
        grpc_channel_arguments=args.grpc_channel_arguments,
        saved_model_tags=saved_model_tags(args.saved_model_tags),
        enable_signature_method_name_check=args.enable_signature_method_name_check,
        allow_version_labels_for_unavailable_models=(
            args.allow_version_labels_for_unavailable_models
        ),
        tensorflow_intra_op_parallelism=intra,
        tensorflow_inter_op_parallelism=inter,
        enable_batching=args.enable_batching,
        batching_parameters_file=args.batching_parameters_file,
        enable_per_model_batching_parameters=args.enable_per_model_batching_parameters,
        monitoring_config_file=args.monitoring_config_file,
        ssl_config_file=args.ssl_config_file,
        **own_flag_values(args),
    )
    stop = threading.Event()

    class StoppedWhileStarting(Exception):
        """A signal came while start() still waited for the initial models."""

    starting = True

    def request_stop(signum, _frame):
        logger.info("Received signal %d: shutting down", signum)
        stop.set()
        if starting:  # start() may wait for the models forever; TF Serving dies here too
            raise StoppedWhileStarting(f"signal {signum} before the models were AVAILABLE")

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = ModelServer(options)
    try:
        with terminal.step("Starting the model server") as step:
            server.start()
            rest = f", REST {server.rest_url}" if server.rest_port else ""
            step.done(f"gRPC {server.grpc_address}{rest}")
    except StoppedWhileStarting:
        terminal.print("serve: stopped before the initial models were AVAILABLE")
        return 1
    except (ModelConfigError, ServingError, ValueError, OSError) as exc:
        terminal.print(f"serve: failed to start server: {exc}")
        return 1
    finally:
        starting = False
    try:
        print(f"Running gRPC ModelServer at {server.grpc_address} ...", flush=True)
        if args.grpc_socket_path:
            print(
                f"Running gRPC ModelServer at UNIX socket {args.grpc_socket_path} ...", flush=True
            )
        if server.rest_port:
            print(f"Exporting HTTP/REST API at:{server.rest_url} ...", flush=True)
        with terminal.step("Serving") as step:
            states: dict[tuple[str, int], str] = {}
            while not stop.wait(0.5):
                now = _version_states(server)
                for key, state in sorted(now.items()):
                    if states.get(key) != state:
                        terminal.print(f"model {key[0]} version {key[1]}: {state}")
                states = now
                step.update(_describe_serving(now) + " · Ctrl-C stops")
            step.done("stopped")
    finally:
        server.stop()
    print("Server stopped", flush=True)
    return 0


def version_text() -> str:
    """Returns what --version prints: the server's and TensorFlow's versions, as TF Serving."""
    from importlib import metadata

    from tfx_serving_ext import __version__

    try:
        tensorflow = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        tensorflow = "unknown"
    return (
        f"TensorFlow ModelServer: tfx-serving-ext {__version__} (embedded server)\n"
        f"TensorFlow Library: {tensorflow}"
    )


def _version_states(server) -> dict[tuple[str, int], str]:
    """Returns {(model, version): state} of every version the server knows."""
    core = server.core
    return {
        (name, record.version): record.state
        for name in core.model_names()
        for record in core.manager(name).version_states()
    }


def _describe_serving(states: dict[tuple[str, int], str]) -> str:
    """Returns e.g. "penguin: 2 AVAILABLE, 3 LOADING"."""
    models: dict[str, list[str]] = {}
    for (name, version), state in sorted(states.items()):
        models.setdefault(name, []).append(f"{version} {state}")
    return "; ".join(f"{name}: {', '.join(v)}" for name, v in models.items()) or "no models"
