"""A private Docker engine for the tests: dockerd inside a network namespace made for it.

`DockerEngine.start()` creates the namespace (`ip netns add`), brings its loopback up and starts
`dockerd` in it with `nsenter --net=` (not `ip netns exec`, which remounts /sys and hides the
cgroup mounts dockerd needs) and its own data root, exec root, pidfile and unix socket. docker0,
its iptables rules and docker-proxy then exist only in that namespace: the host's network is
never touched. Whatever talks to a port a container publishes on 127.0.0.1 must run in the same
namespace: `run_in_netns` and `call_in_netns` start a process there.

dockerd is started detached (`setsid -f`), so it is no child of the test process (the canary
tests fail on a child process left running), and it is stopped by its pidfile. `stop()` is
idempotent and also runs at interpreter exit and on SIGTERM, so Ctrl-C or a killed run leaves no
daemon, namespace or mount; `remove_stale()` clears what a run killed with SIGKILL left.

The data root is persistent (under the cache directory), so images built once, the expensive
part, are there for the next run; a second session running at the same time gets a throwaway
data root instead (an flock on the cached one).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.containers.requirements import find_command

logger = logging.getLogger(__name__)

CACHE_ROOT = Path(os.environ.get("TFX_SERVING_EXT_CACHE", "/var/cache/tfx-serving-ext"))
NETNS_PREFIX = "tfxse-"
STATE_PREFIX = "tfxse-docker-"
REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 20


class EngineError(RuntimeError):
    """dockerd could not be started in its network namespace."""


def _run(
    argv: list[str], *, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise EngineError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_by_pidfile(pidfile: Path, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        logger.warning("dockerd %d did not stop on SIGTERM: killing it", pid)
        os.kill(pid, signal.SIGKILL)


def _unmount_under(root: Path) -> None:
    """Unmounts whatever is still mounted below `root`, deepest first."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    prefix = str(root.resolve())
    points = [line.split()[4] for line in lines]
    for point in sorted({p for p in points if p == prefix or p.startswith(prefix + "/")})[::-1]:
        _run(["umount", "-l", point], check=False)


@dataclass
class DockerEngine:
    """A dockerd in network namespace `netns`, reachable at `socket` (unix socket path)."""

    netns: str
    state_dir: Path
    data_root: Path
    data_root_lock: Any = None
    started_seconds: float = 0.0
    # `ip netns add` bind-mounts /run/netns onto itself the first time; undone when we did it.
    owns_netns_mount: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def socket(self) -> Path:
        return self.state_dir / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "dockerd.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "dockerd.log"

    @property
    def host(self) -> str:
        """Returns the DOCKER_HOST URL of this engine."""
        return f"unix://{self.socket}"

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    def env(self) -> dict[str, str]:
        """Returns this process's environment pointed at this engine (DOCKER_HOST)."""
        env = {**os.environ, "DOCKER_HOST": self.host}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        return env

    def client(self):
        """Returns a docker SDK client for this engine (close it when done)."""
        import docker

        return docker.DockerClient(base_url=self.host, timeout=300)

    @classmethod
    def start(cls) -> DockerEngine:
        """Returns a running engine in a fresh network namespace.

        Raises:
            EngineError: the namespace or dockerd could not be started (dockerd's log attached).
        """
        remove_stale()
        netns = f"{NETNS_PREFIX}{os.getpid()}"
        state_dir = Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir="/tmp"))
        data_root, lock = _claim_data_root(state_dir)
        engine = cls(netns, state_dir, data_root, lock)
        _ENGINES.append(engine)
        began = time.monotonic()
        engine.owns_netns_mount = not _is_mount_point(NETNS_DIR)
        try:
            _run(["ip", "netns", "add", netns])
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
            (state_dir / "daemon.json").write_text("{}\n")
            (state_dir / "netns").write_text(netns)
            argv = [
                "setsid",
                "-f",
                find_command("nsenter") or "nsenter",
                f"--net={engine.netns_path}",
                "--",
                find_command("dockerd") or "dockerd",
                f"--config-file={state_dir / 'daemon.json'}",
                "--ip6tables=false",
                "--storage-driver=overlay2",
                f"--data-root={data_root}",
                f"--exec-root={state_dir / 'exec'}",
                f"--pidfile={engine.pidfile}",
                f"-H={engine.host}",
            ]
            with open(engine.log_path, "ab") as log:
                subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True, timeout=30
                )
            engine._wait_ready(began + START_TIMEOUT_SECONDS)
        except BaseException:
            engine.stop()
            raise
        engine.started_seconds = time.monotonic() - began
        logger.info("dockerd up in netns %s in %.1f s", netns, engine.started_seconds)
        return engine

    def _wait_ready(self, deadline: float) -> None:
        import docker

        while time.monotonic() < deadline:
            if self.socket.exists():
                try:
                    client = docker.DockerClient(base_url=self.host, timeout=5)
                    try:
                        if client.ping():
                            return
                    finally:
                        client.close()
                except Exception:  # noqa: BLE001 - not answering yet
                    pass
            time.sleep(0.2)
        raise EngineError(f"dockerd did not answer within {START_TIMEOUT_SECONDS} s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        """Returns the end of dockerd's log."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def nsenter_argv(self, argv: list[str]) -> list[str]:
        """Returns `argv` prefixed so that it runs in this engine's network namespace."""
        return [find_command("nsenter") or "nsenter", f"--net={self.netns_path}", "--", *argv]

    def run_in_netns(
        self, argv: list[str], *, timeout: float, check: bool = True, **kwargs
    ) -> subprocess.CompletedProcess:
        """Runs `argv` in the namespace with DOCKER_HOST set; returns the completed process."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        done = subprocess.run(
            self.nsenter_argv(argv), env=kwargs.pop("env", self.env()), timeout=timeout, **kwargs
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"`{' '.join(argv)}` failed ({done.returncode}) in netns {self.netns}:\n"
                f"{done.stdout[-3000:] if done.stdout else ''}\n"
                f"{done.stderr[-3000:] if done.stderr else ''}"
            )
        return done

    def _call_argv(self, function: str, kwargs: dict[str, Any], result_path: Path) -> list[str]:
        module = "tests.containers.in_netns"
        args = [function, json.dumps(kwargs), str(result_path)]
        return self.nsenter_argv([sys.executable, "-m", module, *args])

    def call_in_netns(self, function: str, *, timeout: float, **kwargs: Any) -> Any:
        """Returns what `tests.containers.in_netns.<function>(**kwargs)` returned, run in the
        namespace by a child Python (JSON in, JSON out), so it can reach published ports."""
        with tempfile.TemporaryDirectory(prefix="netns-call-") as tmp:
            out = Path(tmp) / "result.json"
            argv = self._call_argv(function, kwargs, out)
            done = subprocess.run(
                argv, env=self.env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
            )
            if done.returncode != 0:
                raise AssertionError(
                    f"{function} failed ({done.returncode}) in netns {self.netns}:\n"
                    f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
                )
            return json.loads(out.read_text())

    def popen_in_netns(self, function: str, result_path: Path, **kwargs: Any) -> subprocess.Popen:
        """Starts `in_netns.<function>(**kwargs)` in the namespace; returns the process (it is
        the Python itself: nsenter execs it, so a signal sent to it reaches the function)."""
        return subprocess.Popen(
            self._call_argv(function, kwargs, result_path),
            env=self.env(),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> None:
        """Stops dockerd, deletes the namespace and unmounts what is left; never raises."""
        if self._stopped:
            return
        self._stopped = True
        try:
            _teardown(self.state_dir, self.netns, self.data_root)
            if self.owns_netns_mount:
                _release_netns_dir()
        except Exception:  # noqa: BLE001 - teardown must not raise
            logger.warning("Tearing down the Docker engine failed", exc_info=True)
        if self.data_root_lock is not None:
            self.data_root_lock.close()
            self.data_root_lock = None


def _claim_data_root(state_dir: Path) -> tuple[Path, Any]:
    """Returns (data root, lock file): the cached one when free, else one in `state_dir`."""
    cached = CACHE_ROOT / "docker"
    try:
        cached.mkdir(parents=True, exist_ok=True)
        lock = open(cached.parent / "docker.lock", "w")  # noqa: SIM115 (held until stop)
    except OSError:
        return state_dir / "data", None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        logger.warning("%s is in use by another test run: using a throwaway data root", cached)
        return state_dir / "data", None
    return cached, lock


NETNS_DIR = Path("/run/netns")


def _is_mount_point(path: Path) -> bool:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[4] == str(path) for line in lines)


def _release_netns_dir() -> None:
    """Unmounts and removes /run/netns once no namespace is left in it (`ip netns add` made
    it a mount point), so the host is left as it was."""
    if NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
        while _is_mount_point(NETNS_DIR):
            if _run(["umount", str(NETNS_DIR)], check=False).returncode != 0:
                return
        with contextlib.suppress(OSError):
            NETNS_DIR.rmdir()


def _teardown(state_dir: Path, netns: str, data_root: Path) -> None:
    _kill_by_pidfile(state_dir / "dockerd.pid")
    # containerd-shims outlive a SIGKILLed dockerd; they hold the namespace's mounts.
    _kill_shims(state_dir)
    _unmount_under(state_dir)
    _unmount_under(data_root)
    _run(["ip", "netns", "del", netns], check=False)
    shutil.rmtree(state_dir, ignore_errors=True)


def _kill_shims(state_dir: Path) -> None:
    marker = str(state_dir)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and ("containerd" in cmdline or "dockerd" in cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def remove_stale() -> None:
    """Tears down engines whose test run died (its pid is gone) without stopping them."""
    for state_dir in Path("/tmp").glob(f"{STATE_PREFIX}*"):
        try:
            netns = (state_dir / "netns").read_text().strip()
        except OSError:
            continue
        owner = netns.removeprefix(NETNS_PREFIX)
        if owner.isdigit() and _pid_alive(int(owner)):
            continue
        logger.warning("Removing the Docker engine a dead test run left in %s", state_dir)
        data_root, lock = _claim_data_root(state_dir)
        try:
            _teardown(state_dir, netns, data_root)
        finally:
            if lock is not None:
                lock.close()


_ENGINES: list[DockerEngine] = []


def stop_all() -> None:
    """Stops every engine this process started (at exit and on SIGTERM)."""
    while _ENGINES:
        _ENGINES.pop().stop()


def _on_sigterm(signum, frame) -> None:
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(stop_all)
if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _on_sigterm)
