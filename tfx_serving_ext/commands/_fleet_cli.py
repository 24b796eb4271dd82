"""The fleet side of `push` and `versions`: `--fleet`, `--watch`, and what a person waits on.

While a fleet push verifies and watches, the step's live line shows every replica's state (or a
count per state on a large fleet) and the watch's running figures; piped, each replica's change
and each watch sample is one plain line. After the push, one line per replica and the watch's
verdict with its figures.
"""

from __future__ import annotations

import argparse
import re
import threading
from collections import Counter
from typing import Any

# Above this many replicas the live line counts states instead of naming each replica.
MAX_NAMED_REPLICAS = 4

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Returns seconds from "90", "90s", "5m", "1h" or "500ms".

    Raises:
        argparse.ArgumentTypeError: anything else (argparse turns it into a usage error).
    """
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write e.g. 300, 90s, 5m or 1h"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def fleet_entries(values: list[str]) -> list[str]:
    """Returns the --fleet entries, each value split at commas."""
    return [entry.strip() for value in values for entry in value.split(",") if entry.strip()]


def fleet_protocol(args: argparse.Namespace, entries: list[str]) -> str:
    """Returns --protocol, or as for --server: rest when the first replica is http://."""
    if args.protocol:
        return args.protocol
    return "rest" if entries and entries[0].startswith(("http://", "https://")) else "grpc"


def add_fleet_arg(parser: argparse.ArgumentParser) -> None:
    """Adds --fleet (repeatable; addresses or dns:///name:port)."""
    parser.add_argument(
        "--fleet",
        action="append",
        default=[],
        metavar="ADDR",
        help="a replica (host:port, [ipv6]:port, http://host:port) or dns:///name:port for "
        "every A/AAAA record of a headless Service, always with the port (none is assumed: TF "
        "Serving listens on 8500 for gRPC, 8501 for REST); repeatable or comma-separated; "
        "instead of --server",
    )


def add_watch_args(parser: argparse.ArgumentParser) -> None:
    """Adds --watch, --metrics-port, --watch-requests, --max-error-rate, --canary-label and
    --stable-label."""
    parser.add_argument(
        "--watch",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="after the swap, watch the new version this long (e.g. 5m) and roll it back when "
        "its error rate or p99 is worse than the previous version's",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="the replicas' REST port, where their Prometheus metrics are, for a gRPC fleet",
    )
    parser.add_argument(
        "--watch-requests",
        metavar="FILE",
        help="TFRecord of PredictionLogs to replay at both versions (default: their warmup)",
    )
    parser.add_argument(
        "--max-error-rate",
        type=float,
        default=0.01,
        help="how far the new error rate may exceed the previous one's (default 0.01)",
    )
    parser.add_argument("--canary-label", help="label the new version this first (with --watch)")
    parser.add_argument("--stable-label", help="label moved to the new version once watched")


def progressive_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Returns the VolumePushConfig fields the fleet and watch flags set, and the protocol
    (--protocol, else as the first replica's address or --server's says)."""
    from tfx_serving_ext.commands._volume_args import protocol_of

    entries = fleet_entries(args.fleet)
    return {
        "server_protocol": fleet_protocol(args, entries) if entries else protocol_of(args),
        "fleet": entries,
        "metrics_port": args.metrics_port,
        "watch_seconds": args.watch,
        "watch_requests_file": args.watch_requests,
        "watch_thresholds": {"max_error_rate": args.max_error_rate},
        "canary_label": args.canary_label,
        "stable_label": args.stable_label,
    }


class FleetDisplay:
    """Follows replica states and watch samples; shows them on a Terminal step as they change."""

    def __init__(self, terminal: Any, step: Any):
        self._terminal, self._step = terminal, step
        self._lock = threading.Lock()
        self.states: dict[str, str] = {}
        self.watch_line = ""

    def replica_changed(self, state: Any) -> None:
        """Takes a fleet.ReplicaState (called from the verification threads)."""
        with self._lock:
            self.states[state.address] = state.state
            line = self._replicas_line()
        if not self._terminal.interactive:
            self._terminal.print(f"  replica {state.address}: {state.state} {state.message}")
        self._step.update(line)

    def watch_sampled(self, report: Any) -> None:
        """Takes a watch.WatchReport after each sample."""
        self.watch_line = f"watch {report.elapsed_seconds:.0f}/{report.window_seconds:.0f}s · " + (
            watch_figures_line(report.to_dict())
        )
        if not self._terminal.interactive:
            self._terminal.print(f"  {self.watch_line}")
        self._step.update(self.watch_line)

    def _replicas_line(self) -> str:
        if len(self.states) <= MAX_NAMED_REPLICAS:
            return " · ".join(f"{a} {s}" for a, s in self.states.items())
        counts = Counter(self.states.values())
        return f"{len(self.states)} replicas: " + ", ".join(
            f"{n} {s}" for s, n in counts.most_common()
        )


def watch_figures_line(watch: dict[str, Any]) -> str:
    """Returns the watch's figures in one line: replayed new vs previous, metrics after/before."""
    parts = []
    new, previous = watch["replayed"]["new"], watch["replayed"]["previous"]
    if new["requests"]:
        parts.append(
            f"replayed v{watch['new_version']}: {new['errors']}/{new['requests']} errors, "
            f"p99 {_ms(new['p99_ms'])}; v{watch['previous_version']}: "
            f"{previous['errors']}/{previous['requests']} errors, p99 {_ms(previous['p99_ms'])}"
        )
    after, before = watch["metrics"]["after"], watch["metrics"]["before"]
    if after is not None and before is not None:
        parts.append(
            f"metrics after the swap {after['error_rate']:.1%} errors of {after['requests']}, "
            f"p99 {_ms(after['p99_ms'])}; before {before['error_rate']:.1%}, "
            f"p99 {_ms(before['p99_ms'])}"
        )
    return "; ".join(parts) or "no traffic yet"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def print_fleet_result(result: Any) -> None:
    """Prints each replica's last state and the watch's verdict and figures."""
    for replica in result.replicas:
        print(f"replica {replica['address']}: {replica['state']} {replica['message']}".rstrip())
    if result.watch is not None:
        watch = result.watch
        print(f"watch: {watch['verdict']} after {watch['elapsed_seconds']:.1f}s")
        print(f"  {watch_figures_line(watch)}")
        for reason in watch["reasons"]:
            print(f"  {reason}")


def print_fleet_versions(
    args: argparse.Namespace,
    versions: dict[int, Any],
    labels: dict[int, list[str]],
    size_of: Any,
) -> None:
    """Prints the versions on the volume with one state column per replica (R1, R2, ...)."""
    from tfx_serving_ext.publish.fleet import Fleet, version_states_by_replica

    entries = fleet_entries(args.fleet)
    with Fleet.connect(entries, protocol=fleet_protocol(args, entries)) as fleet:
        answers = version_states_by_replica(fleet, args.model_name)
    names = {address: f"R{i}" for i, address in enumerate(answers, start=1)}
    served = {v for states in answers.values() if isinstance(states, dict) for v in states}
    rows = [("VERSION", "DIRECTORY", "SIZE", *names.values(), "LABELS")]
    for version in sorted(set(versions) | served, reverse=True):
        path = versions.get(version)
        cells = [
            states.get(version, "-") if isinstance(states, dict) else "?"
            for states in answers.values()
        ]
        rows.append(
            (
                str(version),
                path.name if path else "(not on disk)",
                f"{size_of(path) / 1e6:.1f} MB" if path else "",
                *cells,
                ",".join(sorted(labels.get(version, []))),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for address, name in names.items():
        answer = answers[address]
        problem = f" (no answer: {answer})" if isinstance(answer, str) else ""
        print(f"{name}: {address}{problem}")
