"""Returns what each replica of a serving fleet reports: addresses, per-replica verification.

A serving volume is usually mounted by several TF Serving replicas behind one Service; asking the
Service answers for one random replica. A fleet is therefore named replica by replica: a list of
addresses, or `dns:///name:port`, whose A/AAAA records are the replicas (a Kubernetes headless
Service). A push is verified when *every* replica reports the new version AVAILABLE.

Usage:
    with Fleet.connect(["dns:///tf-serving-headless:8500"], protocol="grpc") as fleet:
        verification = verify_fleet(fleet, "penguin", version=7, timeout=300)
        verification.ok, [r.state for r in verification.replicas]
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

DNS_PREFIX = "dns:///"

# ReplicaState.state values besides TF Serving's version states (START, LOADING, AVAILABLE, END).
WAITING = "WAITING"  # the replica does not report the version yet (its source has not polled)
UNREACHABLE = "UNREACHABLE"
TIMEOUT = "TIMEOUT"
ROLLED_BACK = "ROLLED_BACK"  # back on the previous version after the push was undone
STOPPED = "STOPPED"  # no longer waited for: another replica already failed the push
AVAILABLE = "AVAILABLE"
END = "END"


# The forms of a fleet entry, as the errors (and `push --help`) name them.
ADDRESS_FORMS = (
    "host:port or [ipv6]:port (gRPC), unix:/path (a gRPC socket), http://host:port or "
    "https://host:port (REST), or dns:///name:port (every A/AAAA record of a headless Service)"
)
# A bare host would go to gRPC's default port 443, never TF Serving's: the port is required.
PORT_REQUIRED = (
    "the port is required, none is assumed (TF Serving's defaults: 8500 for gRPC, 8501 for REST)"
)


class FleetError(ValueError):
    """The fleet cannot be named as given: an empty list or a malformed entry (the user's input)."""


class FleetUnresolved(FleetError):
    """A well-formed `dns:///name:port` whose name does not resolve, or has no A/AAAA records."""


@dataclass
class ReplicaState:
    """What one replica reported last: its address, the state of the version, and why."""

    address: str
    state: str = WAITING
    version: int | None = None
    message: str = ""
    seconds: float | None = None  # from the start of the wait to the last state change

    def to_dict(self) -> dict[str, Any]:
        """Returns the state as a JSON-ready dict."""
        return asdict(self)


@dataclass
class Replica:
    """One replica of the fleet: where it is and the client that talks to it."""

    address: str
    client: Any
    metrics_url: str = ""  # its REST root, where /monitoring/prometheus/metrics is


def resolve_fleet(
    entries: Sequence[str],
    *,
    resolver: Callable[..., list] = socket.getaddrinfo,
) -> list[str]:
    """Returns one address per replica: entries as given, `dns:///name:port` expanded.

    A `dns:///name:port` entry becomes `ip:port` for each distinct A/AAAA record of `name`
    (IPv6 in brackets); `http://` entries are kept as they are. Duplicates are dropped.

    Raises:
        FleetError: no entries, or an entry that is none of ADDRESS_FORMS (checked before any
            name is looked up).
        FleetUnresolved: a `dns:///` name that resolves to nothing.
    """
    if not entries:
        raise FleetError(f"the fleet is empty: give replica addresses, each {ADDRESS_FORMS}")
    for entry in entries:
        check_fleet_entry(entry)
    addresses: list[str] = []
    for entry in entries:
        if not entry.startswith(DNS_PREFIX):
            addresses.append(entry)
            continue
        host, _, port = entry[len(DNS_PREFIX) :].rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # dns:///[::1]:8500
        try:
            records = resolver(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise FleetUnresolved(f"{entry!r}: {host} does not resolve ({exc})") from exc
        ips = sorted({record[4][0] for record in records})
        if not ips:
            raise FleetUnresolved(
                f"{entry!r}: {host} has no A/AAAA records (is the Service headless?)"
            )
        addresses.extend(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip in ips)
    return list(dict.fromkeys(addresses))


def check_fleet_entry(entry: str) -> None:
    """Checks that `entry` names a replica in one of ADDRESS_FORMS, with its port.

    Raises:
        FleetError: it does not, e.g. "fleet entry '127.0.0.1' has no port: write host:port ...".
    """
    problem = _entry_problem(entry)
    if problem:
        raise FleetError(f"fleet entry {entry!r} {problem}: write {ADDRESS_FORMS}; {PORT_REQUIRED}")


def _entry_problem(entry: str) -> str:
    """Returns what keeps `entry` from being a replica address ("" when nothing does)."""
    if "," in entry:
        return "holds several addresses: give a list, one replica per entry"
    if entry.startswith("unix:"):
        return "" if entry.removeprefix("unix:").lstrip("/") else "names no socket path"
    if entry.startswith(DNS_PREFIX):
        return _host_port_problem(entry[len(DNS_PREFIX) :])
    if entry.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(entry)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            return "has a path: give the replica's REST root"
        return _host_port_problem(parts.netloc)
    if "://" in entry or entry.startswith("dns:"):
        return "has a scheme that is not http://, https:// or dns:///"
    return _host_port_problem(entry)


def _host_port_problem(hostport: str) -> str:
    """Returns what is wrong with "host:port" or "[ipv6]:port" ("" when nothing is)."""
    if hostport.startswith("["):
        host, closed, rest = hostport[1:].partition("]")
        if not closed:
            return "has no closing ] after its IPv6 address"
        if not rest:
            return "has no port"
        port = rest.removeprefix(":") if rest.startswith(":") else None
    else:
        host, colon, port = hostport.rpartition(":")
        if not colon:
            return "has no port"
        if ":" in host:
            return "is an IPv6 address without brackets ([ipv6]:port)"
    if not host:
        return "has no host"
    if port is None or not port.isdigit() or not 0 < int(port) < 65536:
        return f"has no valid port after {host!r}"
    if any(c.isspace() or c in "/@?#,[]" for c in host):
        return f"has {host!r} where a host name or IP address goes"
    return ""


def metrics_url_for(address: str, protocol: str, metrics_port: int | None) -> str:
    """Returns the REST root of a replica, where TF Serving serves its Prometheus metrics.

    Over REST that is the address itself; over gRPC it is the same host on `metrics_port`
    (TF Serving's `--rest_api_port`, 8501 in the official image), or "" when not given.
    """
    if address.startswith(("http://", "https://")):
        root = address.rstrip("/")
        if metrics_port is None:
            return root
        scheme, _, hostport = root.partition("://")
        return f"{scheme}://{hostport.rpartition(':')[0]}:{metrics_port}"
    if protocol == "rest" and metrics_port is None:
        return f"http://{address}"
    if metrics_port is None:
        return ""
    return f"http://{address.rpartition(':')[0]}:{metrics_port}"


class Fleet:
    """The replicas of a fleet, each with its own ServingClient; closes them on exit."""

    def __init__(self, replicas: list[Replica], owned: bool = True):
        self.replicas = replicas
        self._owned = owned

    @classmethod
    def connect(
        cls,
        entries: Sequence[str],
        *,
        protocol: str = "grpc",
        metrics_port: int | None = None,
        timeout: float = 10.0,
    ) -> Fleet:
        """Returns the fleet with a client per resolved replica address.

        Raises:
            FleetError, FleetUnresolved: see `resolve_fleet`.
        """
        from tfx_serving_ext.client.client import ServingClient

        replicas = []
        for address in resolve_fleet(entries):
            if protocol == "rest" and not address.startswith(("http://", "https://")):
                address = f"http://{address}"
            client = ServingClient(address, protocol=protocol, timeout=timeout)
            replicas.append(
                Replica(address, client, metrics_url_for(address, protocol, metrics_port))
            )
        return cls(replicas)

    @property
    def addresses(self) -> list[str]:
        """Returns the replicas' addresses, in order."""
        return [r.address for r in self.replicas]

    def close(self) -> None:
        """Closes the clients this fleet opened."""
        if self._owned:
            for replica in self.replicas:
                replica.client.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass
class FleetVerification:
    """The outcome of `verify_fleet`: ok when every replica reported the version AVAILABLE."""

    ok: bool
    replicas: list[ReplicaState]
    message: str
    failed_state: str = ""  # END, TIMEOUT or UNREACHABLE of the first replica that failed


StateCallback = Callable[[ReplicaState], None]


def _version_state(client: Any, model_name: str, version: int) -> tuple[str, str]:
    from tfx_serving_ext.protocol.errors import ServerUnreachable, ServingError, ServingTimeout

    try:
        statuses = client.model_status(model_name, version)
    except (ServerUnreachable, ServingTimeout) as exc:
        return UNREACHABLE, str(exc)
    except ServingError as exc:
        if exc.code != "NOT_FOUND":
            return UNREACHABLE, f"{exc.code}: {exc.message}"
        return WAITING, exc.message
    for status in statuses:
        if status.version == version:
            if status.state == END:
                reason = status.error_message or "unloaded without error (version policy?)"
                return END, f"{status.error_code}: {reason}"
            return status.state, ""
    return WAITING, "not reported yet"


def verify_fleet(
    fleet: Fleet,
    model_name: str,
    version: int,
    timeout: float,
    *,
    on_change: StateCallback | None = None,
    poll_interval: float = 0.1,
) -> FleetVerification:
    """Returns each replica's state once all report `version` AVAILABLE, or one fails.

    Every replica is polled at once. A replica that reports END fails the fleet at once (the
    others stop being waited for); one still short of AVAILABLE at the deadline fails it as
    TIMEOUT, or UNREACHABLE when it never answered.
    """
    start = time.monotonic()
    deadline = start + timeout
    failed = threading.Event()
    lock = threading.Lock()
    states = [ReplicaState(r.address, version=version) for r in fleet.replicas]

    def report(state: ReplicaState, new: str, message: str) -> None:
        with lock:
            if (state.state, state.message) == (new, message):
                return
            state.state, state.message = new, message
            state.seconds = round(time.monotonic() - start, 3)
        logger.info("Replica %s: version %d %s %s", state.address, version, new, message)
        if on_change is not None:
            on_change(state)

    def watch_replica(replica: Replica, state: ReplicaState) -> None:
        while True:
            current, message = _version_state(replica.client, model_name, version)
            if current in (AVAILABLE, END):
                report(state, current, message)
                if current == END:
                    failed.set()
                return
            if failed.is_set():
                report(state, STOPPED, f"last seen {current}; another replica failed the push")
                return
            if time.monotonic() >= deadline:
                final = UNREACHABLE if current == UNREACHABLE else TIMEOUT
                report(state, final, f"not AVAILABLE within {timeout:g}s (last seen {current})")
                failed.set()
                return
            report(state, current, message)
            failed.wait(poll_interval)

    threads = [
        threading.Thread(target=watch_replica, args=(r, s), daemon=True, name=f"verify-{r.address}")
        for r, s in zip(fleet.replicas, states, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bad = [s for s in states if s.state != AVAILABLE]
    if not bad:
        message = f"version {version} is AVAILABLE on all {len(states)} replicas"
        return FleetVerification(True, states, message)
    first = next((s for s in bad if s.state != STOPPED), bad[0])
    failures = "; ".join(
        f"{s.address}: {s.state} {s.message}".strip() for s in bad if s.state != STOPPED
    )
    message = f"version {version} not AVAILABLE on {len(bad)} of {len(states)} replicas: {failures}"
    return FleetVerification(False, states, message, failed_state=first.state)


def served_by_replica(fleet: Fleet, model_name: str) -> dict[str, set[int] | str]:
    """Returns each replica's AVAILABLE versions, or the error that kept it from answering."""
    from tfx_serving_ext.protocol.errors import ServingError
    from tfx_serving_ext.publish.served_versions import served_versions

    answers: dict[str, set[int] | str] = {}
    for replica in fleet.replicas:
        try:
            answers[replica.address] = served_versions(replica.client, model_name)
        except ServingError as exc:
            answers[replica.address] = f"{exc.code}: {exc.message}"
    return answers


def version_states_by_replica(fleet: Fleet, model_name: str) -> dict[str, dict[int, str] | str]:
    """Returns each replica's {version: state} for the model, or why it did not answer."""
    from tfx_serving_ext.protocol.errors import ServingError

    answers: dict[str, dict[int, str] | str] = {}
    for replica in fleet.replicas:
        try:
            statuses = replica.client.model_status(model_name)
        except ServingError as exc:
            answers[replica.address] = {} if exc.code == "NOT_FOUND" else f"{exc.code}: {exc}"
            continue
        answers[replica.address] = {s.version: s.state for s in statuses}
    return answers


def wait_fleet_back_on(
    fleet: Fleet,
    model_name: str,
    version: int,
    timeout: float,
    *,
    on_change: StateCallback | None = None,
) -> list[ReplicaState]:
    """Returns each replica's state after a rollback: ROLLED_BACK once `version` is its newest.

    Waits for the replicas one after the other within one shared deadline; a replica that does
    not get there is reported TIMEOUT with what it serves (and the last error it gave); one
    whose client fails otherwise is reported UNREACHABLE, never a traceback.
    """
    from tfx_serving_ext.protocol.errors import ServingError, ServingTimeout
    from tfx_serving_ext.publish.served_versions import wait_until_served

    start = time.monotonic()
    deadline = start + timeout
    states = []
    for replica in fleet.replicas:
        state = ReplicaState(replica.address, version=version)
        try:
            wait_until_served(
                replica.client, model_name, version, max(0.1, deadline - time.monotonic())
            )
            state.state, state.message = ROLLED_BACK, f"serves version {version} again"
        except ServingTimeout as exc:
            state.state, state.message = TIMEOUT, str(exc)
        except ServingError as exc:
            state.state, state.message = UNREACHABLE, str(exc)
        state.seconds = round(time.monotonic() - start, 3)
        states.append(state)
        if on_change is not None:
            on_change(state)
    return states
