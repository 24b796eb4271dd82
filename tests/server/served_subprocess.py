"""The embedded server as a separate process (`tfx-serving-ext serve`), for tests that may crash it.

A request that kills the server (a segfault in TensorFlow) must fail a test, not the test run, and
the server's memory must be measured apart from pytest's own.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tests.server.conftest import publish

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class ServedProcess:
    """A running `serve` subprocess: its addresses, and the last lines it printed."""

    process: subprocess.Popen
    grpc_address: str
    rest_url: str
    output: collections.deque

    def alive(self) -> bool:
        """Returns whether the server process is still running."""
        return self.process.poll() is None

    def rss_bytes(self) -> int:
        """Returns the server process's resident memory (VmRSS)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024

    def describe_exit(self) -> str:
        """Returns how the process ended and its last lines, for an assertion message."""
        return f"exit code {self.process.poll()}; last output:\n" + "".join(self.output)


@contextlib.contextmanager
def serve_subprocess(
    model_dir: Path, base: Path, model_name: str, extra_flags: tuple[str, ...] = ()
) -> Iterator[ServedProcess]:
    """Yields the server serving `model_dir` as version 123 of `model_name`, REST and gRPC on.

    `extra_flags` are appended to serve's command line (e.g. "--request_max_elements=4").

    Stops it with SIGTERM (SIGKILL after 30 s) on exit.
    """
    publish(model_dir, base, 123, name="00000123")
    rest_port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfx_serving_ext.cli",
            "serve",
            "--port=0",
            f"--rest_api_port={rest_port}",
            f"--model_name={model_name}",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=5",
            *extra_flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        cwd=REPO,
        env=env,
    )
    output: collections.deque = collections.deque(maxlen=60)
    found = threading.Event()
    address: list[str] = []

    def drain() -> None:
        # Keeps reading so a chatty server never blocks on a full pipe.
        for line in process.stdout:
            output.append(line)
            match = re.search(r"Running gRPC ModelServer at (\S+:\d+)", line)
            if match and not found.is_set():
                address.append(match.group(1))
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        while not found.wait(0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("serve did not start:\n" + "".join(output))
        yield ServedProcess(process, address[0], f"http://127.0.0.1:{rest_port}", output)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
