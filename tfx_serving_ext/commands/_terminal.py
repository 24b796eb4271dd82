"""The terminal of a command a person waits for: one line per step, the logs in a file.

Library, TFX, absl, Beam, TensorFlow and model-server logs go to a log file; the terminal shows
each long step as a live spinner with its elapsed time (on a TTY) or as one plain line when it
ends (piped: no control characters, good for CI logs). With `verbose` the logs go to the
terminal as well, each step then gets a plain line when it starts and when it ends. When a step
fails, the last lines that step wrote to the log are shown with the error.

Example:
    quiet_native_logging(verbose=args.verbose)   # before TensorFlow is imported
    with Terminal(workdir / "demo.log", verbose=args.verbose) as terminal:
        with terminal.step("Pipeline run 1") as step:
            step.update("PenguinTrainer")
            ...
            step.done("pushed version 1")
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

# TensorFlow's C++ start-up lines (oneDNN, CUDA drivers, CPU features), gRPC's core and glog.
# Read once, when the native libraries load: set before TensorFlow is imported.
NATIVE_LOG_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "2",
}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FAILED_STEP_LOG_LINES = 20


def quiet_native_logging(verbose: bool = False) -> None:
    """Quiets TensorFlow's and gRPC's C++ logging unless `verbose` (or the user set them).

    Has no effect on libraries already loaded, so call it before importing TensorFlow.
    """
    if verbose:
        return
    for name, value in NATIVE_LOG_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def default_log_path(command: str) -> Path:
    """Returns a new log file path in the temporary directory for a command without a run dir."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"tfx-serving-ext-{command}-{stamp}-{os.getpid()}.log"


def format_seconds(seconds: float) -> str:
    """Returns `seconds` as a person reads it: "0.4 s", "12 s", "2 min 05 s"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


class Step:
    """One long step on the terminal: its title, a changing detail and, at the end, a summary."""

    def __init__(self, terminal: Terminal, title: str, task_id: int | None):
        self.title = title
        self.summary = ""
        self.failed = False
        self.started = time.monotonic()
        self._terminal = terminal
        self._task_id = task_id

    @property
    def elapsed(self) -> float:
        """Returns the seconds since the step started."""
        return time.monotonic() - self.started

    def update(self, detail: str) -> None:
        """Shows what the step is doing now next to its title (on a TTY; ignored when piped)."""
        progress = self._terminal._progress
        if progress is not None and self._task_id is not None:
            description = f"{self.title} [dim]· {detail}[/]" if detail else self.title
            progress.update(self._task_id, description=description)

    def done(self, summary: str) -> None:
        """Sets the outcome shown on the step's final line (e.g. "pushed version 2")."""
        self.summary = summary

    def fail(self, reason: str) -> None:
        """Marks the step failed without an exception: its final line says FAILED and why.

        For failures the command explains itself (a refused model, a full disk): no log tail.
        """
        self.failed = True
        self.summary = reason


class Terminal:
    """Owns the terminal for one command run: progress per step, logs into `log_path`.

    On entering, Python logging (the root logger, hence TFX's absl, Beam, TensorFlow and the
    model server) is sent to `log_path` instead of the screen, Python warnings with it, and,
    when stderr is the process's real stderr, file descriptor 2 too, so that native libraries
    (TensorFlow's C++ logging, gRPC) and handlers holding `sys.stderr` (absl's own) also write
    to the log. Everything is put back on leaving.

    Args:
        log_path: the log file (appended to; its directory is created).
        verbose: also show the logs on the terminal, at DEBUG level.
        announce_log: print "log: PATH" when leaving.
    """

    def __init__(self, log_path: str | os.PathLike, *, verbose: bool = False, announce_log=False):
        self.log_path = Path(log_path).absolute()
        self.verbose = verbose
        self.announce_log = announce_log
        self.stream: TextIO = sys.stderr
        self.interactive = False
        self._progress = None
        self._console = None
        self._own_stream: TextIO | None = None
        self._saved_stderr_fd: int | None = None
        self._saved_root: tuple[list[logging.Handler], int] | None = None
        self._saved_absl_level: int | None = None
        self._file_handler: logging.FileHandler | None = None

    # ---- set-up and tear-down ---------------------------------------------------------------

    def __enter__(self) -> Terminal:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        if not self.verbose and _fileno(sys.stderr) == 2:
            sys.stderr.flush()
            self._saved_stderr_fd = os.dup(2)
            log_fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            self._own_stream = os.fdopen(
                os.dup(self._saved_stderr_fd), "w", buffering=1, errors="replace"
            )
            self.stream = self._own_stream
        self.interactive = not self.verbose and _isatty(self.stream)
        if self.interactive:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        self._route_logging()
        return self

    def _route_logging(self) -> None:
        root = logging.getLogger()
        self._saved_root = (root.handlers[:], root.level)
        for handler in self._saved_root[0]:
            root.removeHandler(handler)
        self._file_handler = logging.FileHandler(self.log_path, encoding="utf-8")
        self._file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(self._file_handler)
        if self.verbose:
            on_screen = logging.StreamHandler(self.stream)
            on_screen.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
            root.addHandler(on_screen)
        root.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        # absl's logger starts at WARNING until absl's flags are parsed; TFX narrates at INFO.
        absl_logger = logging.getLogger("absl")
        self._saved_absl_level = absl_logger.level
        absl_logger.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        logging.captureWarnings(True)

    def __exit__(self, *exc_info) -> None:
        self._stop_progress()
        logging.captureWarnings(False)
        root = logging.getLogger()
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            if handler is self._file_handler or not self._saved_root:
                handler.close()
            elif handler not in self._saved_root[0]:
                handler.flush()
        if self._saved_root is not None:
            handlers, level = self._saved_root
            for handler in handlers:
                root.addHandler(handler)
            root.setLevel(level)
        if self._saved_absl_level is not None:
            logging.getLogger("absl").setLevel(self._saved_absl_level)
        if self.announce_log:
            self.print(f"log: {self.log_path}")
        if self._saved_stderr_fd is not None:
            sys.stderr.flush()
            os.dup2(self._saved_stderr_fd, 2)
            os.close(self._saved_stderr_fd)
            self._saved_stderr_fd = None
        if self._own_stream is not None:
            self._own_stream.close()
            self._own_stream = None
        self.stream = sys.stderr

    # ---- output -----------------------------------------------------------------------------

    def print(self, text: str = "") -> None:
        """Writes a line of ours to the terminal (above a running progress display)."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        elif self._console is not None:
            self._console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[Step]:
        """Shows `title` with a spinner and the elapsed time while the block runs.

        Ends with one line: the title, the summary given to `Step.done` and the duration. If
        the block raises, the line says it failed and the last lines of the log written
        during the step are shown (unless verbose: they are on screen already); the exception
        is re-raised.
        """
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        task_id = None
        if self.interactive:
            task_id = self._start_progress(title)
        elif self.verbose:
            self.print(f"{title} ...")
        step = Step(self, title, task_id)
        try:
            yield step
        except BaseException as exc:
            self._stop_progress()
            self._print_failure(step, exc, log_offset)
            raise
        self._stop_progress()
        self._print_done(step)

    def _start_progress(self, title: str) -> int:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn(
                "{task.description}",
                table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
            ),
            TimeElapsedColumn(),
            console=self._console,
            transient=True,
            expand=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._progress.start()
        return self._progress.add_task(title, total=None)

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _print_done(self, step: Step) -> None:
        took = format_seconds(step.elapsed)
        if step.failed:
            self._print_failed_line(step, step.summary)
            return
        if self._console is not None:
            from rich.text import Text

            line = Text("✓ ", style="green")
            line.append(step.title, style="bold")
            if step.summary:
                line.append(f" · {step.summary}")
            line.append(f"  {took}", style="dim")
            self._console.print(line, overflow="fold")
        else:
            summary = f": {step.summary}" if step.summary else ""
            self.print(f"{step.title}{summary} ({took})")

    def _print_failure(self, step: Step, exc: BaseException, log_offset: int) -> None:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{_describe(exc)}"
        self._print_failed_line(step, reason)
        if self.verbose or isinstance(exc, KeyboardInterrupt):
            return
        tail = self.log_tail(log_offset)
        if tail:
            self.print(f"last lines of the log ({self.log_path}):")
            for line in tail:
                self.print(f"  {line}")

    def _print_failed_line(self, step: Step, reason: str) -> None:
        took = format_seconds(step.elapsed)
        if self._console is not None:
            from rich.text import Text

            line = Text("✗ ", style="red")
            line.append(step.title, style="bold")
            line.append(f" failed after {took}: {reason}", style="red")
            self._console.print(line, overflow="fold")
        else:
            self.print(f"{step.title}: FAILED after {took}: {reason}")

    def log_tail(self, offset: int = 0, lines: int = FAILED_STEP_LOG_LINES) -> list[str]:
        """Returns the last `lines` lines written to the log after byte `offset`."""
        for handler in logging.getLogger().handlers:
            handler.flush()
        with contextlib.suppress(OSError), open(self.log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
            return [line for line in text.splitlines() if line.strip()][-lines:]
        return []


def _describe(exc: BaseException) -> str:
    message = str(exc).strip() or "(no message)"
    return f"{type(exc).__name__}: {message}"


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False
