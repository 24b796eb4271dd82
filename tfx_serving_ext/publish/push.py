"""Pushing a model to a serving volume: publish, verify on the server, label, retain.

This is the one function the ServingPusher executor and the `tfx-serving-ext push` command call.
Its settings (`VolumePushConfig`, `push_config`) and the way back (`rollback_volume`,
`rollback`) live in their own modules and are importable from here as well.

Usage:
    config = VolumePushConfig(base_directory="/serving/penguin", model_name="penguin",
                              server_address="127.0.0.1:8500", keep_versions=3)
    result = push_to_volume("/pipeline/Trainer/model/7/Format-Serving", config)
    if not result.pushed:
        raise SystemExit(result.message)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx_serving_ext.protocol import model_config
from tfx_serving_ext.protocol.saved_model import (
    SavedModelError,
    check_variables_present,
    is_saved_model_dir,
)
from tfx_serving_ext.publish import volume
from tfx_serving_ext.publish.push_config import (
    NEW_VERSION,
    PREVIOUS_VERSION,
    PushConfigError,
    VolumePushConfig,
)
from tfx_serving_ext.publish.rollback import VolumeRollbackResult, rollback_volume
from tfx_serving_ext.publish.served_versions import served_versions, wait_until_served

# The config and the rollback live in their own modules; callers import them from here too.
__all__ = [
    "NEW_VERSION",
    "PREVIOUS_VERSION",
    "PushConfigError",
    "VolumePushConfig",
    "VolumePushResult",
    "VolumeRollbackResult",
    "push_to_volume",
    "rollback_volume",
    "wait_until_served",
]

logger = logging.getLogger(__name__)

# Values of VolumePushResult.verification
VERIFIED = "available"
LOAD_FAILED = "load_failed"
TIMED_OUT = "timeout"
UNREACHABLE = "unreachable"
NOT_VERIFIED = "not_verified"  # no server address given


@dataclass
class VolumePushResult:
    """The outcome of `push_to_volume`."""

    pushed: bool
    version: int | None = None
    destination: str = ""
    verification: str = NOT_VERIFIED
    message: str = ""
    rolled_back: bool = False
    labels: dict[str, int] = field(default_factory=dict)
    removed_versions: list[int] = field(default_factory=list)
    copy_seconds: float = 0.0
    available_seconds: float | None = None  # from the rename to AVAILABLE on the server
    # Per replica (a fleet, or the one server of a watched push): ReplicaState dicts.
    replicas: list[dict[str, Any]] = field(default_factory=list)
    # The post-push watch's figures, verdict and reasons (WatchReport.to_dict()), if watched.
    watch: dict[str, Any] | None = None


def push_to_volume(
    model_dir: str | os.PathLike,
    config: VolumePushConfig,
    *,
    progress: volume.ProgressCallback | None = None,
    client: Any = None,
    on_replica: Callable[[Any], None] | None = None,
    on_watch: Callable[[Any], None] | None = None,
) -> VolumePushResult:
    """Returns the outcome of publishing `model_dir` on the volume and verifying it on the server.

    Steps: publish atomically under a new version; if a server is given, wait until it reports
    the version AVAILABLE (on END or timeout the push fails with the server's message and, with
    `rollback_on_failure`, the version is removed so the server stays on the old one); then set
    labels in the model config file and apply retention (never removing a served or labelled
    version).

    Args:
        model_dir: the SavedModel directory.
        config: destination and verification settings.
        progress: called with (bytes copied, total bytes) during the copy.
        client: a ServingClient to use instead of one built from `config.server_address`.
        on_replica: called with a fleet.ReplicaState whenever a replica's state changes.
        on_watch: called with the watch.WatchReport after every sample of the watch.

    With a `fleet`, a watch (`watch_seconds`) or a label canary (`canary_label`), the push is
    progressive (`progressive.push_progressively`): every replica must report the version
    AVAILABLE, and a watch that finds it doing worse than the previous version rolls it back
    (`pushed=False`, the reason in `message`, the figures in `watch`).

    Raises:
        PushConfigError: `model_dir` holds no SavedModel, or (with no server to verify on) its
            variables are incomplete, or the watch's `watch_requests_file` cannot be read, or
            the watch would have nothing to look at (no request to replay, no replica's
            metrics: set `metrics_port` or `watch_requests_file`); nothing is published.
        model_config.ModelConfigError: the model config file cannot be read or has no entry
            for the model (checked before anything is published).
        volume.UnsafeModelPath: the model tree links outside itself.
    """
    model_dir = Path(model_dir)
    if not is_saved_model_dir(model_dir):
        raise PushConfigError(f"{model_dir} holds no saved_model.pb: not a SavedModel to push")
    if config.model_config_file and (
        config.version_labels or Path(config.model_config_file).is_file()
    ):
        # Read before publishing: a bad file must not leave a published version behind.
        model_config.read_version_labels(config.model_config_file, config.model_name)
    if client is None and (config.fleet or config.watch_seconds or config.canary_label):
        from tfx_serving_ext.publish.progressive import push_progressively

        return push_progressively(
            model_dir, config, progress=progress, on_replica=on_replica, on_watch=on_watch
        )
    if client is None and config.server_address:
        from tfx_serving_ext.client.client import ServingClient

        with ServingClient(config.server_address, protocol=config.server_protocol) as own:
            return push_to_volume(model_dir, config, progress=progress, client=own)
    served_before: set[int] = set()
    if client is not None:
        from tfx_serving_ext.protocol.errors import ServingError

        try:
            served_before = served_versions(client, config.model_name)
        except ServingError as exc:
            message = f"server {config.server_address} not usable, nothing published: {exc}"
            logger.error("Push failed: %s", message)
            return VolumePushResult(pushed=False, verification=UNREACHABLE, message=message)

    if client is None:
        # No server will load it before it counts as pushed: check what can be checked cheaply.
        try:
            check_variables_present(model_dir)
        except SavedModelError as exc:
            raise PushConfigError(f"not pushed: {exc}") from exc
    published = volume.publish_version(model_dir, config.base_directory, progress=progress)
    result = VolumePushResult(
        pushed=True,
        version=published.version,
        destination=str(published.path),
        copy_seconds=published.copy_seconds,
    )
    if client is not None:
        _verify(client, config, published, result)
        result.available_seconds = (
            time.monotonic() - published.renamed_at if result.verification == VERIFIED else None
        )
        if result.verification != VERIFIED:
            return result
        volume.record_verified_version(config.base_directory, published.version)
    else:
        result.message = f"published version {published.version}; no server given to verify on"

    labelled: set[int] = set()
    if config.version_labels:
        from tfx_serving_ext.protocol.errors import ServingError

        try:
            result.labels = _set_labels(client, config, published.version, served_before)
        except ServingError as exc:
            # The version is published and AVAILABLE: report the push, say labels did not move.
            logger.warning("Labels not moved: cannot tell which versions are AVAILABLE (%s)", exc)
            result.message += f"; labels not moved (server: {exc})"
    if config.model_config_file and Path(config.model_config_file).is_file():
        labelled = set(
            model_config.read_version_labels(config.model_config_file, config.model_name).values()
        )
    protected = labelled | {published.version}
    if client is not None and config.keep_versions:
        from tfx_serving_ext.protocol.errors import ServingError

        try:
            protected |= served_versions(client, config.model_name)
        except ServingError as exc:
            logger.warning("Retention skipped: cannot tell which versions are served (%s)", exc)
            return result
    result.removed_versions = volume.apply_retention(
        config.base_directory, config.keep_versions, protected
    )
    return result


def _verify(
    client: Any,
    config: VolumePushConfig,
    published: volume.PublishedVersion,
    result: VolumePushResult,
) -> None:
    from tfx_serving_ext.protocol.errors import ServerUnreachable, ServingTimeout, VersionLoadFailed

    try:
        client.wait_until_available(
            config.model_name, version=published.version, timeout=config.verify_timeout_seconds
        )
    except VersionLoadFailed as exc:
        result.verification, result.message = (
            LOAD_FAILED,
            f"version {published.version} failed to load: {exc}",
        )
    except ServingTimeout as exc:
        result.verification, result.message = (
            TIMED_OUT,
            (
                f"version {published.version} not AVAILABLE within "
                f"{config.verify_timeout_seconds:g}s: {exc}"
            ),
        )
    except ServerUnreachable as exc:
        result.verification, result.message = (
            UNREACHABLE,
            f"server unreachable while verifying: {exc}",
        )
    else:
        result.verification = VERIFIED
        result.message = f"version {published.version} is AVAILABLE on {config.server_address}"
        logger.info("%s", result.message)
        return
    result.pushed = False
    logger.error("Push failed: %s", result.message)
    if config.rollback_on_failure:
        try:
            volume.remove_version(config.base_directory, published.version)
        except volume.NoSuchVersion:
            result.message += "; the version was already gone from the volume (rolled back?)"
            return
        result.rolled_back = True
        result.message += "; the version was removed again so the server keeps the old one"


def _set_labels(
    client: Any, config: VolumePushConfig, new_version: int, served_before: set[int]
) -> dict[str, int]:
    others = [v for v in served_before if v != new_version]
    targets: dict[str, int] = {}
    for label, target in config.version_labels.items():
        if target == NEW_VERSION:
            targets[label] = new_version
        elif target == PREVIOUS_VERSION:
            if not others:
                logger.warning("Label %r: no previous version was served; left unchanged", label)
                continue
            targets[label] = max(others)
        else:
            targets[label] = int(target)
    available = served_versions(client, config.model_name)
    for label, version in list(targets.items()):
        if version not in available:
            # TF Serving rejects the whole config when a label points at an unloaded version.
            logger.warning(
                "Label %r not moved to version %d: the server does not report it AVAILABLE "
                "(its version policy must keep it loaded, e.g. latest { num_versions: 2 })",
                label,
                version,
            )
            del targets[label]
    if not targets:
        return {}
    return model_config.set_version_labels(config.model_config_file, config.model_name, targets)
