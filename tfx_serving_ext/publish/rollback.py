"""Rolling a served model back: versions off the volume, their labels dropped, the server checked.

Usage:
    result = rollback_volume("/serving/penguin", model_name="penguin", client=client)
    result.current_version, result.archived_to
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx_serving_ext.protocol import model_config
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish.retention import rollback_versions
from tfx_serving_ext.publish.served_versions import wait_until_served
from tfx_serving_ext.publish.volume_state import NoSuchVersion


@dataclass
class VolumeRollbackResult:
    """The outcome of `rollback_volume`."""

    current_version: int
    removed_versions: list[int]
    archived_to: dict[int, Path]
    dropped_labels: list[str] = field(default_factory=list)
    verified: bool = False


def rollback_volume(
    base_directory: str | os.PathLike,
    *,
    to_version: int | None = None,
    model_name: str = "model",
    model_config_file: str | os.PathLike | None = None,
    client: Any = None,
    timeout: float = 300.0,
) -> VolumeRollbackResult:
    """Returns what was rolled back: versions above `to_version` moved to the archive.

    Labels pointing at those versions are dropped from the model config file first (TF Serving
    rejects a config that labels an unloaded version); with a client, waits until the server
    serves `to_version` as its newest AVAILABLE version.

    Raises:
        NoSuchVersion: nothing to roll back to, or `to_version` is not on the volume.
        ServingTimeout: the server did not go back to `to_version` within `timeout`.
    """
    versions = sorted(list_versions(base_directory))
    if to_version is None:
        to_version = versions[-2] if len(versions) > 1 else None
    if to_version is None or to_version not in versions:
        raise NoSuchVersion(
            f"cannot roll {base_directory} back to {to_version}: versions present {versions}"
        )
    dropped: list[str] = []
    if model_config_file:
        newer = {v for v in versions if v > to_version}
        dropped = model_config.drop_labels_on_versions(model_config_file, model_name, newer)
    rolled = rollback_versions(base_directory, to_version=to_version)
    result = VolumeRollbackResult(
        current_version=rolled.current_version,
        removed_versions=rolled.removed_versions,
        archived_to=rolled.archived_to,
        dropped_labels=dropped,
    )
    if client is not None:
        wait_until_served(client, model_name, to_version, timeout)
        result.verified = True
    return result
