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

from tfx_serving_ext.commands._terminal import Terminal, default_log_path

logger = logging.getLogger(__name__)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_parser(subparsers) -> None:
    """Registers the `serve` subcommand."""
    p = subparsers.add_parser(
        "serve",
        help="run the embedded TF-Serving-compatible model server (tensorflow_model_server flags)",
        description="Serve SavedModels over TF Serving's gRPC and REST APIs. Flags are "
        "tensorflow_model_server's; --host defaults to 127.0.0.1.",
    )
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port)")
    p.add_argument(
        "--rest_api_port", type=int, default=0, help="REST port (0 = REST off, as in TF Serving)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--model_name", default="default", help="name of the model (one-model form)")
    p.add_argument("--model_base_path", default="", help="directory holding numeric versions")
    p.add_argument("--model_config_file", default="", help="text-format ModelServerConfig")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0)
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    p.add_argument("--enable_model_warmup", type=_bool, default=True, nargs="?", const=True)
    p.add_argument("--num_request_iterations_for_warmup", type=int, default=1)
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000)
    p.add_argument("--max_num_load_retries", type=int, default=5)
    p.add_argument(
        "--load_retry_interval_micros",
        type=int,
        default=1_000_000,
        help="wait between load retries (TF Serving's default is 60 s; here 1 s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serves until SIGTERM or SIGINT; returns the exit code."""
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
        load_retry_interval_seconds=args.load_retry_interval_micros / 1e6,
    )
    stop = threading.Event()

    def request_stop(signum, _frame):
        logger.info("Received signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = ModelServer(options)
    try:
        with terminal.step("Starting the model server") as step:
            server.start()
            rest = f", REST {server.rest_url}" if server.rest_port else ""
            step.done(f"gRPC {server.grpc_address}{rest}")
    except (ModelConfigError, ServingError, ValueError, OSError) as exc:
        terminal.print(f"serve: failed to start server: {exc}")
        return 1
    try:
        print(f"Running gRPC ModelServer at {server.grpc_address} ...", flush=True)
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
