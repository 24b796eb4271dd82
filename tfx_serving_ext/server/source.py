"""Finds the versions of each model on disk and tells the manager which ones to serve."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from tfx_serving_ext.protocol.versions import list_versions

logger = logging.getLogger(__name__)

AspiredCallback = Callable[[str, dict[int, Path]], None]


def aspired_versions(model_config, on_disk: dict[int, Path]) -> dict[int, Path]:
    """Returns the versions a model's version policy selects among those on disk."""
    policy = model_config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return dict(on_disk)
    if kind == "specific":
        return {v: p for v, p in on_disk.items() if v in set(policy.specific.versions)}
    num_versions = policy.latest.num_versions if kind == "latest" else 1
    newest = sorted(on_disk, reverse=True)[: max(1, num_versions)]
    return {v: on_disk[v] for v in newest}


class VersionSource:
    """Polls every model's base path and reports its aspired versions, like TF Serving's
    FileSystemStoragePathSource.

    `poll_wait_seconds` > 0 polls periodically, 0 polls once, negative never polls.
    """

    def __init__(self, callback: AspiredCallback, poll_wait_seconds: float = 1.0):
        self._callback = callback
        self._poll_wait_seconds = poll_wait_seconds
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_models(self, model_configs: list) -> None:
        """Replaces the set of models to poll (takes effect at the next poll)."""
        with self._lock:
            self._models = {m.name: m for m in model_configs}

    def poll_once(self, names: set[str] | None = None) -> None:
        """Polls each model (or only `names`) now and reports what it finds."""
        with self._lock:
            models = [m for n, m in self._models.items() if names is None or n in names]
        for model in models:
            try:
                on_disk = list_versions(model.base_path)
            except FileNotFoundError:
                logger.error(
                    "File system storage path source: base path %s for servable %s does not "
                    "exist; keeping its current versions",
                    model.base_path,
                    model.name,
                )
                continue
            except OSError as exc:
                logger.error("Cannot list %s for servable %s: %s", model.base_path, model.name, exc)
                continue
            if not on_disk:
                logger.warning(
                    "No versions of servable %s found under base path %s",
                    model.name,
                    model.base_path,
                )
            self._callback(model.name, aspired_versions(model, on_disk))

    def start(self) -> None:
        """Polls once now, then in a background thread as `poll_wait_seconds` says."""
        if self._poll_wait_seconds < 0:
            return
        self.poll_once()
        if self._poll_wait_seconds == 0:
            return
        self._thread = threading.Thread(target=self._run, name="version-source", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_wait_seconds):
            try:
                self.poll_once()
            except Exception:  # a poll must never kill the source thread
                logger.exception("Polling the file system for versions failed")

    def stop(self) -> None:
        """Stops polling and waits for the polling thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
