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

This module publishes (claims a number, stages, copies, commits); `volume_state` keeps the lock,
the high-water mark and the trash, and `retention` takes versions away again. Every public name
of those is importable from here, the volume's one entry point.

Usage:
    published = publish_version("/models/export/123", "/serving/penguin")
    removed = apply_retention("/serving/penguin", keep_versions=3, protected={published.version})
    rollback_versions("/serving/penguin")  # the server falls back to the previous version
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tfx_serving_ext.protocol.model_tree import validate_model_name
from tfx_serving_ext.protocol.versions import list_versions, parse_version
from tfx_serving_ext.publish.retention import (
    RollbackResult,
    apply_retention,
    prune_archive,
    remove_version,
    rollback_versions,
)
from tfx_serving_ext.publish.tree_copy import (
    ProgressCallback,
    UnsafeModelPath,
    copy_planned,
    fsync_dir,
    plan_copy,
)
from tfx_serving_ext.publish.volume_state import (
    ARCHIVE_DIR,
    HIGH_WATER_MARK_FILE,
    LOCK_FILE,
    STATE_DIR,
    TRASH_DIR,
    NoSuchVersion,
    VolumeError,
    next_version,
    raise_high_water_mark,
    read_high_water_mark,
    read_verified_version,
    record_verified_version,
    remove_tree_safely,
    volume_lock,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ARCHIVE_DIR",
    "HIGH_WATER_MARK_FILE",
    "LOCK_FILE",
    "STAGING_PREFIX",
    "STATE_DIR",
    "TRASH_DIR",
    "NoSuchVersion",
    "ProgressCallback",
    "PublishedVersion",
    "RollbackResult",
    "UnsafeModelPath",
    "VolumeError",
    "apply_retention",
    "prune_archive",
    "list_versions",
    "next_version",
    "parse_version",
    "publish_version",
    "read_high_water_mark",
    "read_verified_version",
    "record_verified_version",
    "remove_stale_staging",
    "remove_version",
    "rollback_versions",
    "validate_model_name",
    "volume_lock",
]

# The old private name, which tests hold to stage races with a concurrent rollback.
_volume_lock = volume_lock

STAGING_PREFIX = ".staging-"
# A staging directory of another host (shared volume) cannot be checked by pid: age decides.
STALE_STAGING_SECONDS = 6 * 3600
_STAGING_RE = re.compile(
    r"^\.staging-(?P<version>\d+)-(?P<pid>\d+)@(?P<host>.+)-(?P<tag>[0-9a-f]{8})$"
)


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
        UnsafeModelPath: a symlink in `model_dir` points outside it (or loops), an entry is a
            FIFO, device or socket, or a file was swapped for another while it was copied.
        OSError: the copy or the flush to disk failed (disk full, I/O error).
        VolumeError: `model_dir` is not a directory.
    """
    source = Path(model_dir)
    if not source.is_dir():
        raise VolumeError(f"model directory {source} does not exist or is not a directory")
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(base)
    plan = plan_copy(source)
    total = sum(entry.size for entry in plan if not entry.is_dir)

    claimed, staging = _claim_staging_dir(base)
    started = time.monotonic()
    try:
        copied = copy_planned(plan, staging, total, progress)
        with volume_lock(base):
            version = _commit_version(base, staging, claimed)
    except BaseException:
        remove_tree_safely(base, staging)
        raise
    renamed_at = time.monotonic()
    logger.info("Published %s as version %d at %s", source, version, base / str(version))
    return PublishedVersion(
        version=version,
        path=base / str(version),
        bytes_copied=copied,
        files_copied=sum(1 for entry in plan if not entry.is_dir),
        copy_seconds=renamed_at - started,
        renamed_at=renamed_at,
    )


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
            remove_tree_safely(base, entry)
            removed.append(entry)
    trash = base / STATE_DIR / TRASH_DIR
    if trash.is_dir():
        for entry in trash.iterdir():
            # Entries are renamed here only to be deleted; a leftover is an interrupted delete.
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


# --- internals -----------------------------------------------------------------------------


def _claim_staging_dir(base: Path) -> tuple[int, Path]:
    with volume_lock(base):
        claimed = next_version(base)
        raise_high_water_mark(base, claimed)
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
    raise_high_water_mark(base, version)
    target = base / str(version)
    os.rename(staging, target)
    fsync_dir(base)
    return version


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
