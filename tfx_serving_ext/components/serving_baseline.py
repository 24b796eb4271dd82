"""The baseline as what serves now: asked of the model server, or read off the serving volume.

    validator = SignatureValidator(model=..., serving_baseline={
        "base_directory": "/serving/penguin", "model_name": "penguin",
        "server_address": "tf-serving:8500"})   # without an address: the newest version on disk

MLMD lineage (`baseline_resolver`) is a guess at what serves; the server and the volume know. This
needs no resolver node, so a pipeline using it compiles and runs alike under LocalDagRunner, the
tfx CLI, Vertex Pipelines and open-source Kubeflow Pipelines (whose compiler has no resolvers).

- With `server_address`: the newest version the server reports AVAILABLE, read from
  `<base_directory>/<version>` (the volume the server polls). The server knowing no version of the
  model means nothing serves yet: no baseline.
- Without: the newest complete version (a numeric directory holding a SavedModel) under
  `base_directory`; none (or no directory at all) means a first deployment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tfx_serving_ext.config_fields import dataclass_from_mapping
from tfx_serving_ext.protocol.saved_model import is_saved_model_dir
from tfx_serving_ext.protocol.versions import list_versions

logger = logging.getLogger(__name__)

SOURCE_SERVER = "server"
SOURCE_VOLUME = "volume"


class ServingBaselineError(RuntimeError):
    """What serves now cannot be determined (server unreachable, version missing on the volume)."""


@dataclass(frozen=True)
class ServingBaseline:
    """Where to look for the model serving now.

    Attributes:
        base_directory: the serving volume of this model (TF Serving's model_base_path).
        model_name: the model's name on the server (needed with `server_address`).
        server_address: host:port of the TF Serving polling `base_directory`; empty: read the
            volume only.
        server_protocol: "grpc" (default) or "rest" for `server_address`.
        timeout_seconds: how long to wait for the server's answer.
    """

    base_directory: str
    model_name: str = ""
    server_address: str = ""
    server_protocol: str = "grpc"
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_directory:
            raise ValueError("ServingBaseline needs base_directory (the serving volume)")
        if self.server_address and not self.model_name:
            raise ValueError("ServingBaseline with a server_address needs the model_name")
        if self.server_protocol not in ("grpc", "rest"):
            raise ValueError(f"server_protocol must be grpc or rest, not {self.server_protocol!r}")

    @classmethod
    def from_value(cls, value: ServingBaseline | Mapping[str, Any] | str | None):
        """Returns a ServingBaseline from itself, a dict or JSON; None (or "") gives None.

        Raises:
            ValueError: unknown keys, or a missing base_directory.
        """
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return dataclass_from_mapping(cls, value, what="ServingBaseline keys", error=ValueError)

    def to_json(self) -> str:
        """Returns the JSON that `from_value` reads back."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ServingNow:
    """The model serving now: its version, its SavedModel directory and who said so."""

    version: int
    directory: Path
    source: str  # SOURCE_SERVER or SOURCE_VOLUME


def newest_complete_version(base_directory: str | Path) -> tuple[int, Path] | None:
    """Returns (version, dir) of the newest version holding a SavedModel, or None if there is none.

    A version directory without saved_model.pb is one TF Serving could not load (a crash
    mid-copy by a publisher not using staging): it is never taken as the baseline.
    """
    try:
        versions = list_versions(base_directory)
    except FileNotFoundError:
        return None
    for version in sorted(versions, reverse=True):
        if is_saved_model_dir(versions[version]):
            return version, versions[version]
    return None


def _available_versions(config: ServingBaseline) -> list[int]:
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.protocol.errors import ServingError

    try:
        with ServingClient(
            config.server_address, protocol=config.server_protocol, timeout=config.timeout_seconds
        ) as client:
            statuses = client.model_status(config.model_name)
    except ServingError as exc:
        if exc.code == "NOT_FOUND":
            return []
        raise ServingBaselineError(
            f"Cannot ask the model server at {config.server_address} which version of "
            f"{config.model_name} serves now ({exc.code}: {exc.message}). Start it, fix the "
            "address, or leave server_address empty to take the newest version on the volume."
        ) from exc
    return sorted((s.version for s in statuses if s.state == "AVAILABLE"), reverse=True)


def find_serving_now(config: ServingBaseline) -> ServingNow | None:
    """Returns the model serving now per `config`, or None when nothing serves yet.

    Raises:
        ServingBaselineError: the server cannot be asked, or it serves a version that is not on
            `base_directory` (the volume is not the one the server polls).
    """
    if config.server_address:
        available = _available_versions(config)
        if not available:
            logger.info(
                "The server at %s serves no version of %s: no baseline",
                config.server_address,
                config.model_name,
            )
            return None
        version = available[0]
        base = Path(config.base_directory)
        directory = list_versions(base).get(version) if base.is_dir() else None
        if directory is None or not is_saved_model_dir(directory):
            raise ServingBaselineError(
                f"The server at {config.server_address} serves {config.model_name} version "
                f"{version}, but {config.base_directory} holds no SavedModel for it: is "
                "base_directory the volume this server polls (its model_base_path)?"
            )
        logger.info("Baseline: version %d, AVAILABLE on %s", version, config.server_address)
        return ServingNow(version, directory, SOURCE_SERVER)
    newest = newest_complete_version(config.base_directory)
    if newest is None:
        logger.info("No version under %s: no baseline (first deployment)", config.base_directory)
        return None
    logger.info("Baseline: version %d, the newest on %s", newest[0], config.base_directory)
    return ServingNow(newest[0], newest[1], SOURCE_VOLUME)
