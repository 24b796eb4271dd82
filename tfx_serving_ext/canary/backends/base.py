"""The interface every canary model-server backend implements (one class per platform).

It follows TFX InfraValidator's `BaseModelServerRunner`: `start()` schedules the server without
blocking, `wait_until_running(deadline)` blocks until the model server answers (not until the
model is loaded: that is the client's `wait_until_available`), `get_endpoint()` gives the gRPC
`host:port`, `stop()` tears everything down (safe to call at any point, also after a failed or
partial `start()`, and more than once), `get_logs()` returns the server's log for a report and
`timings()` what the start-up cost before any model loaded.

A backend serves two models side by side: the candidate and, when given, the baseline (what
serves now). `targets()` says how a client addresses each once the server runs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CANDIDATE_VERSION = 1
BASELINE_SUFFIX = "-baseline"


class BackendError(RuntimeError):
    """The model server could not be started or reached on this platform."""


class JobAborted(BackendError):
    """The model server exited (or its container/pod ended) before the validation finished."""


class DeadlineExceeded(BackendError):
    """The model server did not come up before the deadline."""


@dataclass(frozen=True)
class ModelTarget:
    """How a client addresses one model on the server: `model_spec.name` and version."""

    model_name: str
    version: int | None = None

    def describe(self) -> str:
        """Returns `name` or `name@version`."""
        return self.model_name if self.version is None else f"{self.model_name}@{self.version}"


@dataclass(frozen=True)
class CanaryModels:
    """The SavedModel directories a canary serves and the name the candidate is served under."""

    model_name: str
    candidate_dir: Path
    baseline_dir: Path | None = None

    @property
    def baseline_name(self) -> str:
        """Returns the model name the baseline is served under (`<model_name>-baseline`)."""
        return f"{self.model_name}{BASELINE_SUFFIX}"

    def hosted(self) -> list[tuple[str, Path]]:
        """Returns (model name, SavedModel dir) for each model a fresh server must hold."""
        models = [(self.model_name, Path(self.candidate_dir))]
        if self.baseline_dir is not None:
            models.append((self.baseline_name, Path(self.baseline_dir)))
        return models


def stage_models(models: CanaryModels, root: Path, *, copy: bool) -> list[tuple[str, Path]]:
    """Returns (name, base path) per hosted model after laying out `root/<name>/1`.

    TF Serving serves numeric version directories under a base path, while a Trainer's model is
    a bare SavedModel: each is linked (or copied, for a server that cannot follow a link out of
    its volume) to version 1 under its own base path, as InfraValidator copies its model.
    """
    import shutil

    staged = []
    for name, saved_model_dir in models.hosted():
        version_dir = root / name / str(CANDIDATE_VERSION)
        version_dir.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copytree(saved_model_dir, version_dir, symlinks=False)
        else:
            version_dir.symlink_to(Path(saved_model_dir).absolute(), target_is_directory=True)
        staged.append((name, version_dir.parent))
    return staged


class ModelServerBackend(abc.ABC):
    """One model server job on one platform, holding the candidate (and the baseline)."""

    def __init__(self, models: CanaryModels):
        self.models = models

    @abc.abstractmethod
    def __repr__(self) -> str:
        """Returns a one-line description for logs (platform, image, address)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Schedules the model server without waiting for it (call `stop()` afterwards).

        Raises:
            BackendError: the platform refused the job.
        """

    @abc.abstractmethod
    def wait_until_running(self, deadline: float) -> None:
        """Returns once the server accepts connections (models may still be loading).

        Args:
            deadline: `time.time()` after which to give up.

        Raises:
            JobAborted: the server exited.
            DeadlineExceeded: the server was not running by `deadline`.
        """

    @abc.abstractmethod
    def get_endpoint(self) -> str:
        """Returns the gRPC `host:port` of the running server.

        Raises:
            BackendError: the server is not running yet.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stops the server and removes what `start()` created; never raises."""

    @abc.abstractmethod
    def get_logs(self) -> str | None:
        """Returns the server's log so far, or None when the platform keeps none."""

    def timings(self) -> dict[str, float]:
        """Returns named start-up durations in seconds since `start()` (e.g. the container's
        start, the server answering), for the report to separate them from the model's load;
        empty when the platform measures none."""
        return {}

    def identity(self) -> dict[str, Any]:
        """Returns what this backend knows of the server it ran (image and digest, address and
        version) for the report and the blessing; empty when it knows nothing beyond its kind."""
        return {}

    def targets(self) -> tuple[ModelTarget, ModelTarget | None]:
        """Returns how to address the candidate and the baseline (None without one)."""
        candidate = ModelTarget(self.models.model_name)
        baseline = None
        if self.models.baseline_dir is not None:
            baseline = ModelTarget(self.models.baseline_name)
        return candidate, baseline

    def __enter__(self) -> ModelServerBackend:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
