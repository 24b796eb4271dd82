"""Progressive delivery on a serving fleet: publish, verify every replica, label canary, watch.

`push_to_volume` hands over to `push_progressively` when the push names a fleet, a watch or a
label canary. The steps:

1. ask every replica what it serves (one that does not answer: nothing is published);
2. when watching, read the requests to replay and snapshot each replica's request metrics
   (the figures before the swap); a watch with neither is refused (`watch_inputs`);
3. publish the version on the volume;
4. wait until every replica reports it AVAILABLE: END on one, or a deadline missed, removes it
   again and waits until every replica is back on the previous version;
5. with a label canary, point the canary label at it (stable stays) and see every replica
   route it;
6. watch it against the previous version; on failure the canary label goes back to the stable
   version, the version is removed, and the push is reported `pushed=False` with the reason;
7. move the stable label (and `version_labels`) to it, then apply retention.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tfx_serving_ext.checks.requests import RequestForSignature
from tfx_serving_ext.publish import volume
from tfx_serving_ext.publish.fleet import (
    END,
    ROLLED_BACK,
    TIMEOUT,
    Fleet,
    FleetUnresolved,
    ReplicaState,
    served_by_replica,
    verify_fleet,
    wait_fleet_back_on,
)
from tfx_serving_ext.publish.fleet import (
    UNREACHABLE as REPLICA_UNREACHABLE,
)
from tfx_serving_ext.publish.labels import LabelNotRouted, move_labels
from tfx_serving_ext.publish.push_config import (
    NEW_VERSION,
    PREVIOUS_VERSION,
    VolumePushConfig,
)
from tfx_serving_ext.publish.watch import FAILED, WatchReport, watch_new_version
from tfx_serving_ext.publish.watch_inputs import watch_inputs

if TYPE_CHECKING:
    from tfx_serving_ext.publish.push import VolumePushResult

logger = logging.getLogger(__name__)

ReplicaCallback = Callable[[ReplicaState], None]
WatchCallback = Callable[[WatchReport], None]


def push_progressively(
    model_dir: Path,
    config: VolumePushConfig,
    *,
    progress: volume.ProgressCallback | None = None,
    on_replica: ReplicaCallback | None = None,
    on_watch: WatchCallback | None = None,
) -> VolumePushResult:
    """Returns the VolumePushResult of a push verified on every replica and watched.

    Args:
        model_dir: the SavedModel directory (already checked by `push_to_volume`).
        config: the push settings; `replica_addresses` names the fleet.
        progress: called with (bytes copied, total bytes) during the copy.
        on_replica: called whenever a replica's state changes (a live display).
        on_watch: called after every sample of the watch.

    Raises:
        FleetError: a fleet entry is malformed (nothing contacted, nothing published).
        PushConfigError: the watch cannot replay its requests file, or would see nothing
            (`watch_inputs`); nothing published.
    """
    from tfx_serving_ext.publish.push import UNREACHABLE, VolumePushResult

    try:
        fleet = Fleet.connect(
            config.replica_addresses,
            protocol=config.server_protocol,
            metrics_port=config.metrics_port,
        )
    except FleetUnresolved as exc:  # a malformed entry (FleetError) is refused, not this
        message = f"fleet not usable, nothing published: {exc}"
        return VolumePushResult(pushed=False, verification=UNREACHABLE, message=message)
    with fleet:
        return _push(fleet, model_dir, config, progress, on_replica, on_watch)


def _push(
    fleet: Fleet,
    model_dir: Path,
    config: VolumePushConfig,
    progress: volume.ProgressCallback | None,
    on_replica: ReplicaCallback | None,
    on_watch: WatchCallback | None,
) -> VolumePushResult:
    from tfx_serving_ext.publish.push import (
        UNREACHABLE,
        VolumePushResult,
    )

    served = served_by_replica(fleet, config.model_name)
    silent = {address: answer for address, answer in served.items() if isinstance(answer, str)}
    if silent:
        states = [ReplicaState(a, REPLICA_UNREACHABLE, message=m) for a, m in silent.items()]
        message = "replicas not usable, nothing published: " + "; ".join(
            f"{a}: {m}" for a, m in silent.items()
        )
        logger.error("Push failed: %s", message)
        result = VolumePushResult(pushed=False, verification=UNREACHABLE, message=message)
        result.replicas = [s.to_dict() for s in states]
        return result
    served_before = set().union(*served.values())
    # Versions are never reused, so what serves now is what the new version is compared with.
    previous = max(served_before) if served_before else None
    replay, before = watch_inputs(fleet, config, previous, model_dir)

    labels_before = _labels_now(config)
    published = volume.publish_version(model_dir, config.base_directory, progress=progress)
    version = published.version
    result = VolumePushResult(
        pushed=True, version=version, destination=str(published.path),
        copy_seconds=published.copy_seconds,
    )  # fmt: skip
    # A failed push leaves the serving volume (and the model config) as it was: whatever fails
    # after publishing takes the version back before the exception goes on.
    try:
        return _after_publish(
            fleet, model_dir, config, result, published, previous, labels_before, replay,
            before, on_replica, on_watch,
        )  # fmt: skip
    except Exception as exc:
        reason = f"push of version {version} failed after publishing: {exc!r}"
        try:
            _undo(fleet, config, result, previous, labels_before, reason, on_replica)
        except Exception:
            logger.exception("Undoing the push of version %d failed too", version)
        raise


def _after_publish(
    fleet: Fleet,
    model_dir: Path,
    config: VolumePushConfig,
    result: VolumePushResult,
    published: volume.PublishedVersion,
    previous: int | None,
    labels_before: dict[str, int],
    replay: list[RequestForSignature],
    before: dict,
    on_replica: ReplicaCallback | None,
    on_watch: WatchCallback | None,
) -> VolumePushResult:
    from tfx_serving_ext.publish.push import (
        LOAD_FAILED,
        TIMED_OUT,
        UNREACHABLE,
        VERIFIED,
    )

    version = result.version
    verification = verify_fleet(
        fleet, config.model_name, version, config.verify_timeout_seconds, on_change=on_replica
    )
    result.replicas = [s.to_dict() for s in verification.replicas]
    if not verification.ok:
        result.verification = {END: LOAD_FAILED, TIMEOUT: TIMED_OUT}.get(
            verification.failed_state, UNREACHABLE
        )
        _undo(fleet, config, result, previous, labels_before, verification.message, on_replica)
        return result
    result.verification = VERIFIED
    result.available_seconds = time.monotonic() - published.renamed_at
    result.message = verification.message
    volume.record_verified_version(config.base_directory, version)

    try:
        if config.canary_label:
            result.labels = move_labels(
                fleet, config.model_config_file, config.model_name,
                {config.canary_label: version}, timeout=config.verify_timeout_seconds,
            )  # fmt: skip
        if config.watch_seconds:
            report = _watch(fleet, config, version, previous, replay, before, on_watch)
            result.watch = report.to_dict()
            if report.verdict == FAILED:
                reason = f"the watch rolled version {version} back: " + "; ".join(report.reasons)
                _undo(fleet, config, result, previous, labels_before, reason, on_replica)
                return result
            result.message += f"; watch {report.verdict} after {report.elapsed_seconds:.0f}s"
        result.labels = _final_labels(fleet, config, version, previous) or result.labels
    except LabelNotRouted as exc:
        _undo(fleet, config, result, previous, labels_before, str(exc), on_replica)
        return result
    _retain(fleet, config, result)
    return result


def _labels_now(config: VolumePushConfig) -> dict[str, int]:
    """Returns the model's labels in the model config file ({} without one)."""
    from tfx_serving_ext.protocol import model_config

    if not (config.model_config_file and Path(config.model_config_file).is_file()):
        return {}
    return model_config.read_version_labels(config.model_config_file, config.model_name)


def _watch(
    fleet: Fleet,
    config: VolumePushConfig,
    version: int,
    previous: int | None,
    replay: list[RequestForSignature],
    before: dict,
    on_watch: WatchCallback | None,
) -> WatchReport:
    return watch_new_version(
        fleet,
        config.model_name,
        new_version=version,
        previous_version=previous,
        window_seconds=config.watch_seconds,
        interval_seconds=config.watch_interval_seconds,
        thresholds=config.watch_thresholds,
        replay=replay,
        metrics_before=before,
        on_sample=on_watch,
    )


def _final_labels(
    fleet: Fleet, config: VolumePushConfig, version: int, previous: int | None
) -> dict[str, int]:
    targets: dict[str, int] = {}
    if config.stable_label:
        targets[config.stable_label] = version
    for label, target in config.version_labels.items():
        if target == NEW_VERSION:
            targets[label] = version
        elif target == PREVIOUS_VERSION:
            if previous is None:
                logger.warning("Label %r: no previous version was served; left unchanged", label)
                continue
            targets[label] = previous
        else:
            targets[label] = int(target)
    if not targets:
        return {}
    answers = served_by_replica(fleet, config.model_name).values()
    available = set.intersection(*[_available(answer) for answer in answers])
    for label, target in list(targets.items()):
        if target not in available:
            logger.warning(
                "Label %r not moved to version %d: not AVAILABLE on every replica (its version "
                "policy must keep it loaded, e.g. latest { num_versions: 2 })",
                label,
                target,
            )
            del targets[label]
    if not targets:
        return {}
    return move_labels(
        fleet, config.model_config_file, config.model_name, targets,
        timeout=config.verify_timeout_seconds,
    )  # fmt: skip


def _available(answer: set[int] | str) -> set[int]:
    return answer if isinstance(answer, set) else set()


def _undo(
    fleet: Fleet,
    config: VolumePushConfig,
    result: VolumePushResult,
    previous: int | None,
    labels_before: dict[str, int],
    reason: str,
    on_replica: ReplicaCallback | None,
) -> None:
    """Takes the new version back: labels first, then off the volume, then waits.

    Labels go back to what they were before publishing (a canary label the push added goes to
    the stable version); none is left pointing at the removed version. The fleet is waited
    on until `previous` (what served before the push) is every replica's newest version again.
    """
    result.pushed = False
    result.message = reason
    logger.error("Push failed: %s", reason)
    if not config.rollback_on_failure:
        return
    version = result.version
    _restore_labels(fleet, config, result, version, labels_before)
    try:
        volume.remove_version(config.base_directory, version)
    except volume.NoSuchVersion:
        result.message += "; the version was already gone from the volume (rolled back?)"
        return
    result.rolled_back = True
    result.message += f"; version {version} was removed again"
    if previous is None:
        return
    states = wait_fleet_back_on(
        fleet, config.model_name, previous, config.verify_timeout_seconds, on_change=on_replica
    )
    result.replicas = [s.to_dict() for s in states]
    behind = [s.address for s in states if s.state != ROLLED_BACK]
    result.message += (
        f"; replicas {behind} not back on version {previous} in time"
        if behind
        else f"; every replica serves version {previous} again"
    )


def _restore_labels(
    fleet: Fleet,
    config: VolumePushConfig,
    result: VolumePushResult,
    version: int,
    labels_before: dict[str, int],
) -> None:
    """Puts the labels back as they were before publishing; the file is left alone when no
    label changed, and no label is left on `version` (TF Serving would refuse the file)."""
    from tfx_serving_ext.protocol import model_config

    if not (config.model_config_file and Path(config.model_config_file).is_file()):
        return
    now = model_config.read_version_labels(config.model_config_file, config.model_name)
    targets = {label: v for label, v in labels_before.items() if now.get(label) != v}
    added = [label for label in now if label not in labels_before]
    stable = labels_before.get(config.stable_label) if config.stable_label else None
    if config.canary_label in added and stable is not None:
        # The canary label was new: it goes to the stable version rather than away.
        targets[config.canary_label] = stable
        added.remove(config.canary_label)
    if targets or added:
        try:
            result.labels = move_labels(
                fleet, config.model_config_file, config.model_name, targets,
                timeout=config.verify_timeout_seconds, remove=tuple(added),
            )  # fmt: skip
        except LabelNotRouted as exc:
            result.message += f"; labels not moved back: {exc}"
    dropped = model_config.drop_labels_on_versions(
        config.model_config_file, config.model_name, {version}
    )
    if dropped:
        result.message += f"; labels {dropped} dropped from version {version}"
        result.labels = model_config.read_version_labels(
            config.model_config_file, config.model_name
        )


def _retain(fleet: Fleet, config: VolumePushConfig, result: VolumePushResult) -> None:
    from tfx_serving_ext.protocol import model_config

    protected = {result.version}
    if config.model_config_file and Path(config.model_config_file).is_file():
        labels = model_config.read_version_labels(config.model_config_file, config.model_name)
        protected |= set(labels.values())
    if not config.keep_versions:
        return
    for address, answer in served_by_replica(fleet, config.model_name).items():
        if isinstance(answer, str):
            logger.warning("Retention skipped: %s cannot tell what it serves (%s)", address, answer)
            return
        protected |= answer
    result.removed_versions = volume.apply_retention(
        config.base_directory, config.keep_versions, protected
    )
