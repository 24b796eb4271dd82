"""Loads, warms up, swaps and unloads the versions of one model, availability first.

Mirrors TF Serving's AspiredVersionsManager with the AvailabilityPreservingPolicy: a new version
is loaded (and warmed up) before an old one is unloaded, failed loads are retried and then end in
state END with their error while the old version keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tfx_serving_ext.protocol.errors import (
    ServingError,
    from_exception,
    invalid_argument,
    not_found,
)
from tfx_serving_ext.server.servable import Servable

logger = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"

LoadFunction = Callable[[str, int, Path], Servable]


@dataclass
class LoadPolicy:
    """How versions are loaded: retries after a failed load (TF Serving's flags)."""

    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 1.0


@dataclass
class VersionRecord:
    """What the manager knows about one version: its state, last error and the servable."""

    version: int
    path: Path
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    servable: Servable | None = None
    # A failed (or finished) load is not retried while the version stays aspired; it becomes
    # eligible again once the source stops reporting it and reports it anew.
    attempted: bool = False


class ModelManager:
    """Serves the versions of one model that its source says it should."""

    def __init__(self, name: str, load: LoadFunction, policy: LoadPolicy):
        self.name = name
        self._load = load
        self._policy = policy
        self._cond = threading.Condition()
        self._aspired: dict[int, Path] = {}
        self._records: dict[int, VersionRecord] = {}
        self._available: dict[int, Servable] = {}
        self._latest: Servable | None = None
        self._labels: dict[str, int] = {}
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=f"manager-{name}", daemon=True)
        self._thread.start()

    # ---- inputs ---------------------------------------------------------------------------

    def set_aspired_versions(self, versions: dict[int, Path]) -> None:
        """Records which versions should serve; the manager thread acts on it."""
        with self._cond:
            for version, record in self._records.items():
                if version not in versions:
                    record.attempted = False
            self._aspired = dict(versions)
            self._cond.notify_all()

    def set_labels(self, labels: dict[str, int]) -> None:
        """Replaces the version labels of this model."""
        with self._cond:
            self._labels = dict(labels)

    # ---- lookups --------------------------------------------------------------------------

    def servable(self, version: int | None = None, label: str | None = None) -> Servable:
        """Returns the AVAILABLE servable for a version, a label or (neither) the newest.

        Raises:
            ServingError: NOT_FOUND when no such version serves, INVALID_ARGUMENT for an
                unknown label.
        """
        if label is not None:
            with self._cond:
                if label not in self._labels:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                version = self._labels[label]
        if version is None:
            servable = self._latest
            if servable is None:
                raise not_found(f"Servable not found for request: Latest({self.name})")
            return servable
        servable = self._available.get(version)
        if servable is None:
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return servable

    def version_states(self) -> list[VersionRecord]:
        """Returns a snapshot of every version's record, newest first."""
        with self._cond:
            return [
                VersionRecord(r.version, r.path, r.state, r.error_code, r.error_message)
                for _, r in sorted(self._records.items(), reverse=True)
            ]

    def available_versions(self) -> list[int]:
        """Returns the AVAILABLE versions, newest first."""
        return sorted(self._available, reverse=True)

    def labels(self) -> dict[str, int]:
        """Returns the version labels of this model."""
        with self._cond:
            return dict(self._labels)

    def wait_until_settled(self, timeout: float) -> bool:
        """Returns True once every aspired version is AVAILABLE or END (False on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                pending = self._busy or self._next_action() is not None
                if not pending:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))

    # ---- the manager thread ---------------------------------------------------------------

    def stop(self) -> None:
        """Unloads everything and stops the manager thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        with self._cond:
            for record in self._records.values():
                if record.state == AVAILABLE:
                    record.state, record.servable = END, None
            self._available, self._latest = {}, None

    def _next_action(self) -> tuple[str, int] | None:
        """Returns the AvailabilityPreservingPolicy's next (action, version), or None."""
        records = self._records
        has_aspired = bool(self._aspired)
        has_aspired_serving = any(
            records.get(v) is not None and records[v].state == AVAILABLE for v in self._aspired
        )
        unaspired_serving = sorted(
            v for v, r in records.items() if r.state == AVAILABLE and v not in self._aspired
        )
        if unaspired_serving and (
            not has_aspired or has_aspired_serving or len(unaspired_serving) > 1
        ):
            return ("unload", unaspired_serving[0])
        new = [
            v
            for v in self._aspired
            if v not in records or (records[v].state == END and not records[v].attempted)
        ]
        if new:
            return ("load", max(new))
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (action := self._next_action()) is None:
                    self._cond.wait()
                if self._stopping:
                    return
                kind, version = action
                self._busy = True
                if kind == "load":
                    path = self._aspired[version]
                    record = VersionRecord(version, path, state=LOADING, attempted=True)
                    self._records[version] = record
                else:
                    record = self._records[version]
                    record.state = UNLOADING
                    self._publish_available(exclude=version)
            try:
                if kind == "load":
                    self._load_with_retries(record)
                else:
                    self._finish_unload(record)
            except Exception:  # keep the manager alive whatever a load does
                logger.exception("Unexpected error managing %s version %d", self.name, version)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _load_with_retries(self, record: VersionRecord) -> None:
        attempts = 1 + max(0, self._policy.max_num_load_retries)
        error = ServingError("UNKNOWN", "not loaded")
        for attempt in range(attempts):
            if attempt:
                with self._cond:
                    if not self._stopping:
                        self._cond.wait(self._policy.load_retry_interval_seconds)
                    if self._stopping or record.version not in self._aspired:
                        error = ServingError(
                            "CANCELLED",
                            f"Loading of servable {self.name} version {record.version} was "
                            f"cancelled: it is no longer aspired. Last error: {error.message}",
                        )
                        break
                logger.info(
                    "Retrying load of %s version %d (attempt %d of %d)",
                    self.name,
                    record.version,
                    attempt + 1,
                    attempts,
                )
            logger.info(
                "Loading servable version {name: %s version: %d}", self.name, record.version
            )
            started = time.monotonic()
            try:
                servable = self._load(self.name, record.version, record.path)
            except Exception as exc:
                error = from_exception(exc)
                logger.warning(
                    "Loading servable version {name: %s version: %d} failed: %s",
                    self.name,
                    record.version,
                    error.message,
                )
                continue
            with self._cond:
                record.servable = servable
                record.state = AVAILABLE
                self._publish_available()
            logger.info(
                "Successfully loaded servable version {name: %s version: %d} in %.2f s",
                self.name,
                record.version,
                time.monotonic() - started,
            )
            return
        with self._cond:
            record.state = END
            record.error_code = error.code
            record.error_message = error.message
        logger.error(
            "Servable {name: %s version: %d} cannot be loaded: %s",
            self.name,
            record.version,
            error.message,
        )

    def _finish_unload(self, record: VersionRecord) -> None:
        # Requests already running hold their own reference to the servable and finish on it.
        with self._cond:
            record.servable = None
            record.state = END
        logger.info("Unloaded servable version {name: %s version: %d}", self.name, record.version)

    def _publish_available(self, exclude: int | None = None) -> None:
        """Rebuilds the lock-free lookup tables (called with the lock held)."""
        available = {
            v: r.servable
            for v, r in self._records.items()
            if r.state == AVAILABLE and r.servable is not None and v != exclude
        }
        self._available = available
        self._latest = available[max(available)] if available else None
