"""Session fixtures for the live container tests (imported by tests/conftest.py).

- `docker_engine`: a private dockerd in its own network namespace (see `engine.py`), started
  on first use and stopped at the end of the session (also on Ctrl-C or SIGTERM);
- `tf_serving_image`: the TF Serving image the tests run (the stand-in, or `TF_SERVING_IMAGE`);
- `netns_registry`: Debian's docker-registry inside the engine's namespace, where the engine
  can pull from it.

What they need and lack is installed from Debian's packages when the run is root with apt. When
it is not, the tests that need it are skipped and the run ends with one line naming what was
skipped and the command that enables it; with CI=true a missing piece fails the test instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.containers import requirements
from tests.containers.engine import CACHE_ROOT, DockerEngine, EngineError

_SKIPPED: dict[str, str] = {}  # test node id -> what it lacked
_MISSING: set[requirements.Need] = set()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(request: pytest.FixtureRequest, needs: tuple[requirements.Need, ...]) -> None:
    """Installs what `needs` lacks when possible; else skips the test (fails it in CI)."""
    absent = requirements.ensure_installed(needs)
    if not absent and os.geteuid() == 0:
        return
    what = ", ".join(sorted({n.command for n in absent})) or "root (network namespaces)"
    message = f"needs {what}: {requirements.install_command(absent or list(needs))} (as root)"
    if _in_ci():
        pytest.fail(f"CI=true and the container tests cannot run: {message}")
    _MISSING.update(absent or needs)
    _SKIPPED[request.node.nodeid] = what
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_engine(request) -> Iterator[DockerEngine]:
    """A running dockerd in a private network namespace (see tests/containers/engine.py)."""
    require(request, requirements.DOCKER_ENGINE)
    try:
        engine = DockerEngine.start()
    except EngineError as exc:
        pytest.fail(str(exc))
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def tf_serving_image(request, docker_engine):
    """The TF Serving image of the live tests: the stand-in or TF_SERVING_IMAGE."""
    from tests.containers.standin_image import ensure_serving_image

    if not os.environ.get("TF_SERVING_IMAGE"):
        require(request, requirements.IMAGE_BUILD)
    return ensure_serving_image(docker_engine)


@dataclass
class NetnsRegistry:
    """docker-registry listening on 127.0.0.1:`port` inside the engine's namespace."""

    host: str
    root: Path


@pytest.fixture(scope="session")
def netns_registry(request, docker_engine, tmp_path_factory) -> Iterator[NetnsRegistry]:
    """A docker-registry in the engine's namespace, its storage cached between runs.

    The storage persists (beside the engine's data root) so the ~2 GB stand-in base pushed once
    is there next time; each test pushes to repositories of its own.
    """
    require(request, requirements.REGISTRY)
    root = tmp_path_factory.mktemp("netns_registry")
    storage = CACHE_ROOT / "registry" if docker_engine.data_root_lock else root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = 5000  # the namespace is private: nothing else listens there
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    binary = requirements.find_command("docker-registry")
    pidfile = root / "registry.pid"
    # Detached (setsid -f), so it is no child of the test process; stopped by its pid.
    launcher = f'echo $$ > "{pidfile}"; exec "$@" >> "{root}/registry.log" 2>&1'
    subprocess.run(
        [
            "setsid",
            "-f",
            "sh",
            "-c",
            launcher,
            "registry",
            *docker_engine.nsenter_argv([binary, "serve", str(config)]),
        ],
        check=True,
        timeout=30,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = docker_engine.run_in_netns(
                ["python3", "-c", _PROBE.format(port=port)], timeout=10, check=False
            )
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.2)
        yield NetnsRegistry(f"127.0.0.1:{port}", root)
    finally:
        stop_by_pidfile(pidfile)


def stop_by_pidfile(pidfile: Path, timeout: float = 10) -> None:
    """Sends SIGTERM to the process in `pidfile`, SIGKILL after `timeout` seconds."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_PROBE = (
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/v2/', timeout=2).read()"
)


def leftovers(engine: DockerEngine) -> dict[str, list[str]]:
    """Returns the containers, non-default networks and volumes the engine holds."""
    client = engine.client()
    try:
        return {
            "containers": [c.name for c in client.containers.list(all=True)],
            "networks": [
                n.name for n in client.networks.list() if n.name not in ("bridge", "host", "none")
            ],
            "volumes": [v.name for v in client.volumes.list()],
        }
    finally:
        client.close()


def pytest_terminal_summary(terminalreporter) -> None:
    """Ends the run with one line naming the skipped container tests and how to enable them."""
    if not _SKIPPED:
        return
    command = requirements.install_command(sorted(_MISSING, key=lambda n: n.package))
    terminalreporter.write_line(
        f"container tests skipped ({len(_SKIPPED)}): missing "
        f"{', '.join(sorted(set(_SKIPPED.values())))}; enable them with `{command}` as root"
    )
