"""Taking versions off the serving volume: one version, all but the newest N, or a rollback.

Each renames the version out of TF Serving's sight first (into the trash, or the archive for a
rollback) under the volume lock, and records its number in the high-water mark, so a number is
never reused: the server keeps serving a removed version until the next load finishes and
reports it END afterwards, so a reused number could be mistaken for it.

Usage:
    removed = apply_retention("/serving/penguin", keep_versions=3, protected={served})  # archived
    rollback_versions("/serving/penguin")  # the server falls back to the previous version
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tfx_serving_ext.protocol.versions import version_spellings
from tfx_serving_ext.publish.tree_copy import fsync_dir
from tfx_serving_ext.publish.volume_state import (
    ARCHIVE_DIR,
    STATE_DIR,
    NoSuchVersion,
    move_to_trash,
    raise_high_water_mark,
    read_verified_version,
    remove_tree_safely,
    volume_lock,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackResult:
    """What `rollback_versions` did: the version left on top and where the others went."""

    current_version: int
    removed_versions: list[int]
    archived_to: dict[int, Path] = field(default_factory=dict)


def remove_version(base_path: str | os.PathLike, version: int) -> None:
    """Removes one version so that TF Serving never sees it half-deleted.

    The directory is first renamed to a non-numeric name (TF Serving stops seeing it at once),
    then deleted. Its number is recorded in the high-water mark and never reused.

    Raises:
        NoSuchVersion: the version is not on the volume.
    """
    base = Path(base_path)
    with volume_lock(base):
        paths = version_spellings(base).get(version)
        if not paths:
            raise NoSuchVersion(f"version {version} is not on {base}")
        raise_high_water_mark(base, version)
        doomed = [move_to_trash(base, path) for path in paths]
        fsync_dir(base)
    for path in doomed:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
    logger.info("Removed version %d from %s", version, base)


def apply_retention(
    base_path: str | os.PathLike,
    keep_versions: int,
    protected: Iterable[int] = (),
    *,
    archive_keep: int | None = None,
) -> list[int]:
    """Returns the versions taken off the volume to keep only the newest `keep_versions`.

    Only versions older than the newest `keep_versions` go, never one in `protected` (the ones
    being served or labelled) nor the newest version a server verified AVAILABLE after its push
    (so a push of a broken model cannot make retention remove the last good one). They are moved
    into `<base>/.tfx_serving_ext/archive/`, which keeps its own newest `archive_keep` entries
    (default: `keep_versions`). `keep_versions <= 0` keeps everything.
    """
    if keep_versions <= 0:
        return []
    base = Path(base_path)
    keep = set(protected)
    verified = read_verified_version(base)
    if verified is not None:
        keep.add(verified)
    removed: list[int] = []
    # Decided and renamed under the volume lock: a rollback or publish that lands meanwhile
    # cannot make retention remove what has just become the newest version.
    with volume_lock(base):
        versions = version_spellings(base)
        for version in sorted(versions, reverse=True)[keep_versions:]:
            if version in keep:
                logger.info(
                    "Retention keeps version %d: it is served, labelled or the last verified",
                    version,
                )
                continue
            raise_high_water_mark(base, version)
            archived = [_archive(base, version, path) for path in versions[version]]
            if any(target is not None for target in archived):
                removed.append(version)
        fsync_dir(base)
    pruned = prune_archive(base, keep_versions if archive_keep is None else archive_keep)
    logger.info("Retention archived versions %s of %s (pruned %d)", removed, base, len(pruned))
    return removed


def _archive(base: Path, version: int, path: Path) -> Path | None:
    """Returns where version `path` went in the archive (None if it vanished meanwhile)."""
    archive = base / STATE_DIR / ARCHIVE_DIR
    archive.mkdir(parents=True, exist_ok=True)
    target = archive / f"{version}-{time.strftime('%Y%m%dT%H%M%S')}"
    if target.exists():
        target = target.with_name(f"{target.name}-{secrets.token_hex(4)}")
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    fsync_dir(archive)
    return target


def prune_archive(base_path: str | os.PathLike, keep: int) -> list[Path]:
    """Returns the archived versions deleted so that the archive holds its newest `keep`."""
    archive = Path(base_path) / STATE_DIR / ARCHIVE_DIR
    if not archive.is_dir():
        return []
    # Names are "<version>-<archived at>[-<random>]"; anything else is not ours and stays.
    entries = []
    for path in archive.iterdir():
        version, _, archived_at = path.name.partition("-")
        if path.is_dir() and version.isascii() and version.isdigit():
            entries.append(((archived_at[:15], int(version)), path))
    entries.sort(reverse=True)  # newest archived first
    doomed = [path for _, path in entries[max(0, keep) :]]
    for path in doomed:
        remove_tree_safely(Path(base_path), path)
    return doomed


def rollback_versions(
    base_path: str | os.PathLike, to_version: int | None = None
) -> RollbackResult:
    """Returns what was moved away so that `to_version` is the highest version on the volume.

    Every version newer than `to_version` (default: the one below the newest) is renamed into
    `<base>/.tfx_serving_ext/archive/`, where it stays (copy it back by hand, or re-push it, to
    undo); TF Serving then loads the highest remaining version. Their numbers are recorded in the
    high-water mark and never reused: the server keeps serving a removed version until the next
    load finishes and reports it END afterwards, so a reused number could be mistaken for it.

    Raises:
        NoSuchVersion: `to_version` is not on the volume, or there is nothing to roll back to.
    """
    base = Path(base_path)
    archive = base / STATE_DIR / ARCHIVE_DIR
    archived: dict[int, Path] = {}
    # Listed under the lock: a concurrent publish or retention cannot change what is on top.
    with volume_lock(base):
        versions = version_spellings(base)
        ordered = sorted(versions)
        if to_version is None:
            if len(ordered) < 2:
                raise NoSuchVersion(
                    f"{base} holds {len(ordered)} version(s): there is no previous version to "
                    "roll back to"
                )
            to_version = ordered[-2]
        if to_version not in versions:
            raise NoSuchVersion(
                f"version {to_version} is not on {base} (present: {ordered}); pick one of those"
            )
        newer = [v for v in ordered if v > to_version]
        archive.mkdir(parents=True, exist_ok=True)
        raise_high_water_mark(base, max(newer, default=0))
        for version in reversed(newer):  # newest first: the server never sees a gap upwards
            # Every spelling (9 and 00000009): one left behind would keep serving.
            moved = [_archive(base, version, path) for path in versions[version]]
            if any(moved):
                archived[version] = next(target for target in moved if target is not None)
        fsync_dir(base)
        fsync_dir(archive)
    logger.info("Rolled %s back to version %d (archived %s)", base, to_version, newer)
    return RollbackResult(current_version=to_version, removed_versions=newer, archived_to=archived)
