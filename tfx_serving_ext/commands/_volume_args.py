"""Arguments shared by the `versions`, `push` and `rollback` commands (a serving volume)."""

from __future__ import annotations

import argparse


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """Adds --server, --protocol, --model-name and --timeout."""
    parser.add_argument(
        "--server",
        metavar="ADDR",
        help="TF Serving address to ask/verify on: host:port (gRPC) or http://host:port (REST)",
    )
    parser.add_argument(
        "--protocol",
        choices=("grpc", "rest"),
        help="protocol of --server (default: rest for http:// addresses, else grpc)",
    )
    parser.add_argument(
        "--model-name", default="model", help="model name on the server (default: model)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the server to report the version AVAILABLE (default 300)",
    )


def protocol_of(args: argparse.Namespace) -> str:
    """Returns the protocol to use for --server."""
    if args.protocol:
        return args.protocol
    return "rest" if (args.server or "").startswith(("http://", "https://")) else "grpc"
