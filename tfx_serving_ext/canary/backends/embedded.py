"""The embedded backend: the project's TF-Serving-compatible server, in-process or as a subprocess.

In-process (`EmbeddedBackend`) is cheapest (no second TensorFlow import) and what the tests use;
the server's log is the `tfx_serving_ext.server` logger's records during the run. As a
subprocess (`EmbeddedSubprocessBackend`, `python -m tfx_serving_ext.cli serve ...`) the server
is isolated from the canary (a crashing model cannot take the canary down, latency is not
shared with the load driver's threads) and its output is the log; the child is in its own
process group, is killed with the parent on Linux (PR_SET_PDEATHSIG), and `stop()` sends
SIGTERM, then SIGKILL after a grace period.

Both serve the candidate and the baseline from a model config file over symlinked version
directories (`<work_dir>/models/<name>/1 -> SavedModel`).
"""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tfx_serving_ext.canary.backends.base import (
    BackendError,
    CanaryModels,
    DeadlineExceeded,
    JobAborted,
    ModelServerBackend,
    stage_models,
)
from tfx_serving_ext.protocol.model_config import model_server_config_text

logger = logging.getLogger(__name__)

SERVER_LOGGER = "tfx_serving_ext.server"
_ADDRESS_RE = re.compile(r"Running gRPC ModelServer at (\S+:\d+)")
_STOP_GRACE_SECONDS = 10.0


def write_model_config(models: CanaryModels, work_dir: Path) -> Path:
    """Returns the model config file written after staging the models under `work_dir/models`."""
    root = work_dir / "models"
    staged = stage_models(models, root, copy=False)
    config_path = root / "models.config"
    config_path.write_text(model_server_config_text([(name, str(path)) for name, path in staged]))
    return config_path


class EmbeddedBackend(ModelServerBackend):
    """The embedded ModelServer running in this process."""

    def __init__(self, models: CanaryModels, work_dir: str | Path, *, enable_warmup: bool = True):
        super().__init__(models)
        self._work_dir = Path(work_dir)
        self._enable_warmup = enable_warmup
        self._server = None
        self._log = io.StringIO()
        self._log_handler: logging.Handler | None = None
        self._saved_level = logging.NOTSET

    def __repr__(self) -> str:
        address = self._server.grpc_address if self._server is not None else None
        return f"EmbeddedBackend(in-process, address={address})"

    def start(self) -> None:
        from tfx_serving_ext.server import ModelServer, ServerOptions

        if self._server is not None:
            raise BackendError("the server was already started; create a new backend to restart")
        config_path = write_model_config(self.models, self._work_dir)
        self._log_handler = logging.StreamHandler(self._log)
        self._log_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        # The server's INFO lines (loading, retries) make the log a report needs; the level
        # is lowered for the run only and restored in stop().
        server_logger = logging.getLogger(SERVER_LOGGER)
        server_logger.addHandler(self._log_handler)
        self._saved_level = server_logger.level
        if server_logger.getEffectiveLevel() > logging.INFO:
            server_logger.setLevel(logging.INFO)
        self._server = ModelServer(
            ServerOptions(
                model_config_file=str(config_path),
                enable_rest=False,
                enable_model_warmup=self._enable_warmup,
            )
        )
        try:
            self._server.start()
        except Exception as exc:
            raise JobAborted(f"the embedded server did not start: {exc}") from exc

    def wait_until_running(self, deadline: float) -> None:
        # start() returns with the gRPC port bound: nothing to wait for.
        if self._server is None or not self._server.grpc_port:
            raise JobAborted("the embedded server is not running")

    def get_endpoint(self) -> str:
        if self._server is None or not self._server.grpc_port:
            raise BackendError("the server is not running; call start() first")
        return self._server.grpc_address

    def get_logs(self) -> str | None:
        return self._log.getvalue()

    def stop(self) -> None:
        if self._server is not None:
            try:
                self._server.stop()
            except Exception:  # noqa: BLE001 - stop must not raise (it runs in finally)
                logger.warning("Error while stopping the embedded server", exc_info=True)
        if self._log_handler is not None:
            server_logger = logging.getLogger(SERVER_LOGGER)
            server_logger.removeHandler(self._log_handler)
            server_logger.setLevel(self._saved_level)
            self._log_handler = None


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when the parent dies."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - not Linux: the process group is still ours to kill
        pass


class EmbeddedSubprocessBackend(ModelServerBackend):
    """The embedded server as a child process (`tfx-serving-ext serve`)."""

    def __init__(self, models: CanaryModels, work_dir: str | Path, *, enable_warmup: bool = True):
        super().__init__(models)
        self._work_dir = Path(work_dir)
        self._enable_warmup = enable_warmup
        self._process: subprocess.Popen | None = None
        self._log_path = self._work_dir / "server.log"
        self._endpoint: str | None = None

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"EmbeddedSubprocessBackend(pid={pid}, address={self._endpoint})"

    @property
    def pid(self) -> int | None:
        """Returns the server process id (None before start)."""
        return self._process.pid if self._process is not None else None

    def command(self, config_path: Path) -> list[str]:
        """Returns the server command line for a model config file."""
        return [
            sys.executable,
            "-m",
            "tfx_serving_ext.cli",
            "serve",
            "--port=0",
            f"--model_config_file={config_path}",
            f"--enable_model_warmup={'true' if self._enable_warmup else 'false'}",
        ]

    def start(self) -> None:
        if self._process is not None:
            raise BackendError("the server was already started; create a new backend to restart")
        config_path = write_model_config(self.models, self._work_dir)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with open(self._log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(config_path),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        logger.info("Started embedded server process %d", self._process.pid)

    def wait_until_running(self, deadline: float) -> None:
        if self._process is None:
            raise BackendError("start() the server before waiting for it")
        while time.time() < deadline:
            match = _ADDRESS_RE.search(self.get_logs() or "")
            if match:
                self._endpoint = match.group(1)
                return
            code = self._process.poll()
            if code is not None:
                raise JobAborted(f"the embedded server process exited with code {code}")
            time.sleep(0.2)
        raise DeadlineExceeded("the embedded server process did not bind its port in time")

    def get_endpoint(self) -> str:
        if self._endpoint is None:
            raise BackendError("the server is not running; call wait_until_running() first")
        return self._endpoint

    def get_logs(self) -> str | None:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return None

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("Server process %d ignored SIGTERM: killing it", process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except ProcessLookupError:
            pass
        except Exception:  # noqa: BLE001 - stop must not raise
            logger.warning("Error while stopping server process %d", process.pid, exc_info=True)
