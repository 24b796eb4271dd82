"""The endpoint backend: an already-running TF Serving (a staging fleet) that polls a volume.

Nothing is started: `start()` publishes the candidate to the serving volume the server polls
(with `serving.volume.publish_version`, atomically, as the next version), and the baseline is
the newest version that was on the volume before (what serves now). Both are addressed by
version, so the server's version policy must keep two versions loaded (e.g.
`model_version_policy { latest { num_versions: 2 } }`); with `latest(1)` the server unloads the
baseline as soon as the candidate arrives and the canary reports the baseline as unavailable.
`stop()` takes the candidate off the volume again (unless `keep_candidate`), so the fleet goes
back to the baseline; a pusher publishes the blessed model for real afterwards.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

from tfx_serving_ext.canary.backends.base import (
    BackendError,
    CanaryModels,
    DeadlineExceeded,
    ModelServerBackend,
    ModelTarget,
)
from tfx_serving_ext.publish import volume

logger = logging.getLogger(__name__)


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BackendError(f"endpoint address must be host:port (gRPC), got {address!r}")
    return host.strip("[]"), int(port)


class EndpointBackend(ModelServerBackend):
    """A running TF Serving at `address` whose model `models.model_name` polls `base_path`."""

    def __init__(
        self,
        models: CanaryModels,
        address: str,
        base_path: str | Path,
        *,
        keep_candidate: bool = False,
    ):
        super().__init__(models)
        self._address = address
        self._host, self._port = _split_address(address)
        self._base_path = Path(base_path)
        self._keep_candidate = keep_candidate
        self._baseline_version: int | None = None
        self._published: volume.PublishedVersion | None = None

    def __repr__(self) -> str:
        version = self._published.version if self._published else None
        return f"EndpointBackend(address={self._address}, volume={self._base_path}, v={version})"

    @property
    def published_version(self) -> int | None:
        """Returns the version the candidate was published as (None before start)."""
        return self._published.version if self._published else None

    def start(self) -> None:
        if self._published is not None:
            raise BackendError("the candidate was already published; create a new backend")
        present = volume.list_versions(self._base_path) if self._base_path.is_dir() else {}
        self._baseline_version = max(present) if present else None
        self._published = volume.publish_version(self.models.candidate_dir, self._base_path)
        logger.info(
            "Published the candidate as version %d of %s (baseline: version %s)",
            self._published.version,
            self._base_path,
            self._baseline_version,
        )

    def wait_until_running(self, deadline: float) -> None:
        while time.time() < deadline:
            try:
                with socket.create_connection((self._host, self._port), timeout=2.0):
                    return
            except OSError:
                time.sleep(0.5)
        raise DeadlineExceeded(f"nothing accepts connections at {self._address}")

    def get_endpoint(self) -> str:
        return self._address

    def get_logs(self) -> str | None:
        return None  # the fleet's logs are the fleet's

    def targets(self) -> tuple[ModelTarget, ModelTarget | None]:
        if self._published is None:
            raise BackendError("start() publishes the candidate; its version is not known yet")
        candidate = ModelTarget(self.models.model_name, self._published.version)
        baseline = None
        if self._baseline_version is not None:
            baseline = ModelTarget(self.models.model_name, self._baseline_version)
        return candidate, baseline

    def stop(self) -> None:
        if self._published is None or self._keep_candidate:
            return
        try:
            volume.remove_version(self._base_path, self._published.version)
            logger.info("Took candidate version %d off the volume", self._published.version)
        except Exception:  # noqa: BLE001 - stop must not raise
            logger.warning(
                "Could not remove candidate version %d from %s",
                self._published.version,
                self._base_path,
                exc_info=True,
            )
