"""Running a command in a pseudo-terminal, and reading back what a person would have seen."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Sequence
from pathlib import Path

# CSI sequences (colours, cursor moves, erase line), OSC sequences, and single-character escapes.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]")

# What a log line of TFX/absl, TensorFlow's C++ side, Beam or the model server looks like.
LOG_LINE_PATTERNS = [
    re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b[ :]"),  # Python logging formats
    re.compile(r"^[IWEF]\d{4} "),  # absl C++ / glog: I0000 00:00:... port.cc:153]
    re.compile(r"\.(cc|h):\d+\]"),
    re.compile(r"absl|oneDNN|cuda|cuInit|cpu_feature|apache_beam", re.IGNORECASE),
    # Logger and module names; "TensorFlow 2.21" in our own output (who served a canary) is not.
    re.compile(r"\btensorflow\b"),
    re.compile(r"property_predicate|Loading servable|warmup data|Running gRPC ModelServer"),
]


def run_in_terminal(
    argv: Sequence[str], *, cwd: Path, timeout: float, columns: int = 100, rows: int = 40
) -> tuple[int, str]:
    """Runs `argv` with stdin, stdout and stderr on a pseudo-terminal; returns (code, output)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    for name in ("NO_COLOR", "FORCE_COLOR", "TF_CPP_MIN_LOG_LEVEL", "CI"):
        env.pop(name, None)
    process = subprocess.Popen(
        list(argv), cwd=cwd, stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every holder of the follower side has closed it
                break
            if not data:
                break
            chunks.append(data)
        else:
            process.kill()
            raise TimeoutError(f"{argv} still running after {timeout} s")
    finally:
        os.close(leader)
    return process.wait(timeout=60), b"".join(chunks).decode("utf-8", errors="replace")


def screen_lines(raw: str) -> list[str]:
    """Returns the lines of `raw` as text: escapes removed, each line as its last \\r left it."""
    text = _ESCAPES.sub("", raw)
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.split("\r")[-1].rstrip()
        if line:
            lines.append(line)
    return lines


def log_lines(lines: Sequence[str]) -> list[str]:
    """Returns the lines that look like a library's or the server's log line."""
    return [line for line in lines if any(p.search(line) for p in LOG_LINE_PATTERNS)]
