"""Pushing a model to a serving volume: publish, verify on the server, label, retain, roll back.

This is the one function the ServingPusher executor and the `tfx-serving-ext push` command call.

Usage:
    config = VolumePushConfig(base_directory="/serving/penguin", model_name="penguin",
                              server_address="127.0.0.1:8500", keep_versions=3)
    result = push_to_volume("/pipeline/Trainer/model/7/Format-Serving", config)
    if not result.pushed:
        raise SystemExit(result.message)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx_serving_ext.protocol import model_config
from tfx_serving_ext.protocol.saved_model import is_saved_model_dir
from tfx_serving_ext.publish import volume

logger = logging.getLogger(__name__)

# Values of VolumePushResult.verification
VERIFIED = "available"
LOAD_FAILED = "load_failed"
TIMED_OUT = "timeout"
UNREACHABLE = "unreachable"
NOT_VERIFIED = "not_verified"  # no server address given

# Label targets besides a literal version number.
NEW_VERSION = "new"
PREVIOUS_VERSION = "previous"


class PushConfigError(ValueError):
    """The push configuration is invalid; the message says which field and why."""


@dataclass
class VolumePushConfig:
    """Where and how to push a model onto a serving volume.

    Attributes:
        base_directory: the directory TF Serving's `model_base_path` points at.
        model_name: the model's name on the server and in the model config file.
        model_config_file: text-format ModelServerConfig to maintain labels in (optional).
        keep_versions: keep the newest N versions (plus served/labelled ones); 0 keeps all.
        version_labels: {label: "new" | "previous" | version number}, e.g.
            {"canary": "new", "stable": "previous"}. Needs `server_address` and
            `model_config_file`: a label is only set once the server reports its version
            AVAILABLE.
        server_address: gRPC `host:port` or REST `http://host:port` of the server to verify on.
        server_protocol: "grpc" or "rest".
        verify_timeout_seconds: how long to wait for the new version to become AVAILABLE.
        rollback_on_failure: remove the new version again if it fails to load or times out.
    """

    base_directory: str
    model_name: str = "model"
    model_config_file: str | None = None
    keep_versions: int = 0
    version_labels: dict[str, str | int] = field(default_factory=dict)
    server_address: str | None = None
    server_protocol: str = "grpc"
    verify_timeout_seconds: float = 300.0
    rollback_on_failure: bool = True

    def __post_init__(self) -> None:
        if not self.base_directory:
            raise PushConfigError("base_directory is required: the server's model_base_path")
        volume.validate_model_name(self.model_name)
        if self.keep_versions < 0:
            raise PushConfigError(
                f"keep_versions must be >= 0 (0 keeps all), not {self.keep_versions}"
            )
        if self.server_protocol not in ("grpc", "rest"):
            raise PushConfigError(
                f"server_protocol must be 'grpc' or 'rest', not {self.server_protocol!r}"
            )
        if self.verify_timeout_seconds <= 0:
            raise PushConfigError("verify_timeout_seconds must be positive")
        for label, target in self.version_labels.items():
            if not (target in (NEW_VERSION, PREVIOUS_VERSION) or str(target).isdigit()):
                raise PushConfigError(
                    f"version_labels[{label!r}] = {target!r}: use 'new', 'previous' or a version"
                )
        if self.version_labels and not (self.server_address and self.model_config_file):
            raise PushConfigError(
                "version_labels need model_config_file (where labels live) and server_address "
                "(TF Serving refuses a label on a version that is not AVAILABLE)"
            )

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> VolumePushConfig:
        """Returns the config parsed from a JSON object (string or dict); unknown keys raise."""
        data = json.loads(text) if isinstance(text, str) else dict(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PushConfigError(
                f"unknown serving_volume push_destination keys {unknown}; known: {sorted(known)}"
            )
        return cls(**data)

    def to_json(self) -> str:
        """Returns the config as a JSON object string (the component's parameter format)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


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


def push_to_volume(
    model_dir: str | os.PathLike,
    config: VolumePushConfig,
    *,
    progress: volume.ProgressCallback | None = None,
    client: Any = None,
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

    Raises:
        PushConfigError: `model_dir` holds no SavedModel.
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
    if client is None and config.server_address:
        from tfx_serving_ext.client.client import ServingClient

        with ServingClient(config.server_address, protocol=config.server_protocol) as own:
            return push_to_volume(model_dir, config, progress=progress, client=own)
    served_before: set[int] = set()
    if client is not None:
        from tfx_serving_ext.protocol.errors import ServingError

        try:
            served_before = _served_versions(client, config.model_name)
        except ServingError as exc:
            message = f"server {config.server_address} not usable, nothing published: {exc}"
            logger.error("Push failed: %s", message)
            return VolumePushResult(pushed=False, verification=UNREACHABLE, message=message)

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
            protected |= _served_versions(client, config.model_name)
        except ServingError as exc:
            logger.warning("Retention skipped: cannot tell which versions are served (%s)", exc)
            return result
    result.removed_versions = volume.apply_retention(
        config.base_directory, config.keep_versions, protected
    )
    return result


def _served_versions(client: Any, model_name: str) -> set[int]:
    """Returns the versions the server reports AVAILABLE (none if it does not know the model)."""
    from tfx_serving_ext.protocol.errors import ServingError

    try:
        statuses = client.model_status(model_name)
    except ServingError as exc:
        if exc.code != "NOT_FOUND":
            raise
        return set()
    return {s.version for s in statuses if s.state == "AVAILABLE"}


def wait_until_served(client: Any, model_name: str, version: int, timeout: float) -> None:
    """Returns once `version` is the newest AVAILABLE version of the model on the server.

    Unlike ServingClient.wait_until_available this tolerates END: after a rollback the target
    version is usually in END (unloaded when the newer one arrived) until the server reloads it.

    Raises:
        ServingTimeout: it did not happen within `timeout` seconds.
    """
    from tfx_serving_ext.protocol.errors import ServerUnreachable, ServingTimeout

    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while True:
        try:
            seen = _served_versions(client, model_name)
        except ServerUnreachable:
            seen = set()
        if seen and max(seen) == version:
            return
        if time.monotonic() >= deadline:
            raise ServingTimeout(
                f"version {version} of {model_name} is not the newest AVAILABLE version after "
                f"{timeout:g}s (AVAILABLE: {sorted(seen)})"
            )
        time.sleep(0.1)


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
    available = _served_versions(client, config.model_name)
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
        volume.NoSuchVersion: nothing to roll back to, or `to_version` is not on the volume.
        ServingTimeout: the server did not go back to `to_version` within `timeout`.
    """
    versions = sorted(volume.list_versions(base_directory))
    if to_version is None:
        to_version = versions[-2] if len(versions) > 1 else None
    if to_version is None or to_version not in versions:
        raise volume.NoSuchVersion(
            f"cannot roll {base_directory} back to {to_version}: versions present {versions}"
        )
    dropped: list[str] = []
    if model_config_file:
        newer = {v for v in versions if v > to_version}
        dropped = model_config.drop_labels_on_versions(model_config_file, model_name, newer)
    rolled = volume.rollback_versions(base_directory, to_version=to_version)
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
