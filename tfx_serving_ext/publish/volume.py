"""The serving volume: the directory TF Serving's `model_base_path` points at.

TF Serving treats every child directory whose name parses as an integer as a version
(`00000123` is version 123) and ignores everything else, so publishing builds a version under a
non-numeric staging name and renames it into place. Everything this module keeps next to the
versions lives under non-numeric names TF Serving ignores:

    <base>/
      7/ 8/ 9/                         versions
      .staging-10-4242@host-1a2b3c4d/  a version being copied (pid 4242 on `host`)
      .tfx_serving_ext/
        lock                           fcntl lock for claiming a version number
        high_water_mark                highest version ever claimed (never reused)
        trash/                         versions being deleted (renamed here, then removed)
        archive/                       versions taken away by `rollback_versions` (kept)

Usage:
    published = publish_version("/models/export/123", "/serving/penguin")
    removed = apply_retention("/serving/penguin", keep_versions=3, protected={published.version})
    rollback_versions("/serving/penguin")  # the server falls back to the previous version
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tfx_serving_ext.protocol.versions import list_versions, parse_version
from tfx_serving_ext.publish.tree_copy import (
    ProgressCallback,
    UnsafeModelPath,
    copy_planned,
    fsync_dir,
    plan_copy,
)

logger = logging.getLogger(__name__)

__all__ = [
    "NoSuchVersion",
    "ProgressCallback",
    "PublishedVersion",
    "RollbackResult",
    "UnsafeModelPath",
    "VolumeError",
    "apply_retention",
    "list_versions",
    "next_version",
    "parse_version",
    "publish_version",
    "read_high_water_mark",
    "remove_stale_staging",
    "remove_version",
    "rollback_versions",
    "validate_model_name",
]

STATE_DIR = ".tfx_serving_ext"
LOCK_FILE = "lock"
HIGH_WATER_MARK_FILE = "high_water_mark"
TRASH_DIR = "trash"
ARCHIVE_DIR = "archive"
STAGING_PREFIX = ".staging-"
# A staging directory of another host (shared volume) cannot be checked by pid: age decides.
STALE_STAGING_SECONDS = 6 * 3600
_STAGING_RE = re.compile(
    r"^\.staging-(?P<version>\d+)-(?P<pid>\d+)@(?P<host>.+)-(?P<tag>[0-9a-f]{8})$"
)
_MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class VolumeError(RuntimeError):
    """The serving volume cannot be used as asked."""


class NoSuchVersion(VolumeError):
    """The requested version is not on the serving volume."""


@dataclass(frozen=True)
class PublishedVersion:
    """A version renamed into place on the serving volume."""

    version: int
    path: Path
    bytes_copied: int
    files_copied: int
    copy_seconds: float
    # time.monotonic() right after the rename: when TF Serving could first see the version.
    renamed_at: float


@dataclass(frozen=True)
class RollbackResult:
    """What `rollback_versions` did: the version left on top and where the others went."""

    current_version: int
    removed_versions: list[int]
    archived_to: dict[int, Path] = field(default_factory=dict)


def validate_model_name(model_name: str) -> str:
    """Returns `model_name` if it is safe as a single path component and a TF Serving name.

    Raises:
        UnsafeModelPath: the name is empty, holds a separator or `..`, or starts with a dot.
    """
    if not _MODEL_NAME_RE.match(model_name or "") or ".." in model_name:
        raise UnsafeModelPath(
            f"model name {model_name!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "only, starting with a letter or digit, with no '..' or path separators"
        )
    return model_name


def read_high_water_mark(base_path: str | os.PathLike) -> int:
    """Returns the highest version ever claimed on the volume (0 if none was recorded)."""
    path = Path(base_path) / STATE_DIR / HIGH_WATER_MARK_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    try:
        return int(text)
    except ValueError as exc:
        raise VolumeError(
            f"{path} holds {text!r}, not a version number; fix or delete it (the next version "
            "is then chosen from the versions present)"
        ) from exc


def next_version(base_path: str | os.PathLike) -> int:
    """Returns the version number the next publish would claim (without claiming it)."""
    base = Path(base_path)
    return max([read_high_water_mark(base), *list_versions(base)], default=0) + 1


def publish_version(
    model_dir: str | os.PathLike,
    base_path: str | os.PathLike,
    *,
    progress: ProgressCallback | None = None,
) -> PublishedVersion:
    """Returns the version under which `model_dir` was published atomically on the volume.

    The version is strictly greater than every version present and every version ever claimed
    here; concurrent publishers (threads or processes on one host, holding the volume lock) get
    distinct versions. The copy goes to a non-numeric staging directory, is fsynced, then renamed
    to the version number, so TF Serving never sees a partial version. Stale staging directories
    of dead publishers are removed first.

    Args:
        model_dir: the SavedModel directory to publish.
        base_path: the serving volume (TF Serving's `model_base_path`); created if missing.
        progress: called with (bytes copied, total bytes) as the copy advances.

    Raises:
        UnsafeModelPath: a symlink in `model_dir` points outside it (or loops).
        VolumeError: `model_dir` is not a directory.
    """
    source = Path(model_dir)
    if not source.is_dir():
        raise VolumeError(f"model directory {source} does not exist or is not a directory")
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(base)
    plan = plan_copy(source)
    total = sum(size for _, _, size in plan if size > 0)

    claimed, staging = _claim_staging_dir(base)
    started = time.monotonic()
    try:
        copied = copy_planned(plan, staging, total, progress)
        with _volume_lock(base):
            version = _commit_version(base, staging, claimed)
    except BaseException:
        _remove_tree_safely(base, staging)
        raise
    renamed_at = time.monotonic()
    logger.info("Published %s as version %d at %s", source, version, base / str(version))
    return PublishedVersion(
        version=version,
        path=base / str(version),
        bytes_copied=copied,
        files_copied=sum(1 for _, _, size in plan if size >= 0),
        copy_seconds=renamed_at - started,
        renamed_at=renamed_at,
    )


def remove_version(base_path: str | os.PathLike, version: int) -> None:
    """Removes one version so that TF Serving never sees it half-deleted.

    The directory is first renamed to a non-numeric name (TF Serving stops seeing it at once),
    then deleted. Its number is recorded in the high-water mark and never reused.

    Raises:
        NoSuchVersion: the version is not on the volume.
    """
    base = Path(base_path)
    with _volume_lock(base):
        path = list_versions(base).get(version)
        if path is None:
            raise NoSuchVersion(f"version {version} is not on {base}")
        _raise_high_water_mark(base, version)
        doomed = _move_to_trash(base, path)
        fsync_dir(base)
    if doomed is not None:
        shutil.rmtree(doomed, ignore_errors=True)
    logger.info("Removed version %d from %s", version, base)


def apply_retention(
    base_path: str | os.PathLike, keep_versions: int, protected: Iterable[int] = ()
) -> list[int]:
    """Returns the versions deleted to keep only the newest `keep_versions` (plus `protected`).

    Only versions older than the newest `keep_versions` are deleted, never one in `protected`
    (the ones being served or labelled). `keep_versions <= 0` keeps everything.
    """
    if keep_versions <= 0:
        return []
    base = Path(base_path)
    keep = set(protected)
    removed: list[int] = []
    doomed: list[Path] = []
    # Decided and renamed under the volume lock: a rollback or publish that lands meanwhile
    # cannot make retention delete what has just become the newest version.
    with _volume_lock(base):
        versions = list_versions(base)
        for version in sorted(versions, reverse=True)[keep_versions:]:
            if version in keep:
                logger.info("Retention keeps version %d: it is served or labelled", version)
                continue
            _raise_high_water_mark(base, version)
            trashed = _move_to_trash(base, versions[version])
            if trashed is not None:
                doomed.append(trashed)
                removed.append(version)
        fsync_dir(base)
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    logger.info("Retention removed versions %s from %s", removed, base)
    return removed


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
    with _volume_lock(base):
        versions = list_versions(base)
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
        _raise_high_water_mark(base, max(newer, default=0))
        for version in reversed(newer):  # newest first: the server never sees a gap upwards
            target = archive / f"{version}-{time.strftime('%Y%m%dT%H%M%S')}"
            if target.exists():
                target = target.with_name(f"{target.name}-{secrets.token_hex(4)}")
            os.rename(versions[version], target)
            archived[version] = target
        fsync_dir(base)
        fsync_dir(archive)
    logger.info("Rolled %s back to version %d (archived %s)", base, to_version, newer)
    return RollbackResult(current_version=to_version, removed_versions=newer, archived_to=archived)


def remove_stale_staging(base_path: str | os.PathLike, *, now: float | None = None) -> list[Path]:
    """Returns the leftover staging and trash directories removed from the volume.

    A staging directory is stale when its owner process (same host) is dead, or when it is older
    than STALE_STAGING_SECONDS (another host's, or a same-host pid since reused). A live
    publisher's directory younger than that is never touched.
    """
    base = Path(base_path)
    now = time.time() if now is None else now
    host = socket.gethostname()
    removed = []
    for entry in base.iterdir():
        match = _STAGING_RE.match(entry.name)
        if not match:
            continue
        try:
            stale = now - entry.stat().st_mtime > STALE_STAGING_SECONDS
        except FileNotFoundError:
            continue
        # Same host: a dead pid is stale at once; age still decides if the pid was reused
        # (a container whose publisher is always pid 1 would otherwise keep it forever).
        if match["host"] == host and not stale:
            stale = not _pid_alive(int(match["pid"]))
        if stale:
            logger.info("Removing %s left by an interrupted publish", entry)
            _remove_tree_safely(base, entry)
            removed.append(entry)
    trash = base / STATE_DIR / TRASH_DIR
    if trash.is_dir():
        for entry in trash.iterdir():
            # Entries are renamed here only to be deleted; a leftover is an interrupted delete.
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


# --- internals -----------------------------------------------------------------------------


@contextlib.contextmanager
def _volume_lock(base: Path) -> Iterator[None]:
    state = base / STATE_DIR
    state.mkdir(exist_ok=True)
    fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _claim_staging_dir(base: Path) -> tuple[int, Path]:
    with _volume_lock(base):
        claimed = next_version(base)
        _raise_high_water_mark(base, claimed)
        name = f"{STAGING_PREFIX}{claimed}-{os.getpid()}@{socket.gethostname()}-"
        staging = base / f"{name}{secrets.token_hex(4)}"
        staging.mkdir()  # exclusive: fails if it somehow exists
    return claimed, staging


def _commit_version(base: Path, staging: Path, claimed: int) -> int:
    """Renames `staging` to its version; the caller holds the volume lock."""
    present = list_versions(base)
    version = claimed
    highest = max([read_high_water_mark(base), *present])
    # A number above ours was claimed meanwhile (still copying, published, or published and
    # removed again), or another tool wrote ours: take a fresh number, so versions rise in the
    # order they are published and none lands below one that was already served.
    if highest > claimed or claimed in present:
        version = highest + 1
        logger.info("Version %d was overtaken; publishing as %d instead", claimed, version)
    _raise_high_water_mark(base, version)
    target = base / str(version)
    os.rename(staging, target)
    fsync_dir(base)
    return version


def _raise_high_water_mark(base: Path, version: int) -> None:
    """Records `version` as claimed; the caller holds the volume lock."""
    if version <= read_high_water_mark(base):
        return
    state = base / STATE_DIR
    tmp = state / f"{HIGH_WATER_MARK_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{version}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, state / HIGH_WATER_MARK_FILE)
    fsync_dir(state)


def _move_to_trash(base: Path, path: Path) -> Path | None:
    """Returns where `path` was renamed to in the trash (out of TF Serving's sight), or None."""
    trash = base / STATE_DIR / TRASH_DIR
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{path.name}-{secrets.token_hex(4)}"
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    return target


def _remove_tree_safely(base: Path, path: Path) -> None:
    """Renames `path` out of TF Serving's sight (into the trash), then deletes it."""
    target = _move_to_trash(base, path)
    if target is None:
        return
    fsync_dir(base)
    shutil.rmtree(target, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) still answers kill(0) but copies nothing.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True
