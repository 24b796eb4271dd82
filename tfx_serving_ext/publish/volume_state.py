"""The serving volume's own bookkeeping: its lock, its high-water mark, its trash, its names.

Everything here lives under `<base>/.tfx_serving_ext/`, a name TF Serving ignores (it only
sees children whose names parse as integers). Publishing (`volume`) and taking versions away
(`retention`) share it: both hold `volume_lock` while they decide, raise the high-water mark so
that no number is ever reused, and rename doomed directories into the trash before deleting them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish.tree_copy import fsync_dir

STATE_DIR = ".tfx_serving_ext"
LOCK_FILE = "lock"
HIGH_WATER_MARK_FILE = "high_water_mark"
TRASH_DIR = "trash"
ARCHIVE_DIR = "archive"
# The newest version a server reported AVAILABLE after a push: retention never removes it.
VERIFIED_FILE = "verified_available"


class VolumeError(RuntimeError):
    """The serving volume cannot be used as asked."""


class NoSuchVersion(VolumeError):
    """The requested version is not on the serving volume."""


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


@contextlib.contextmanager
def volume_lock(base: Path) -> Iterator[None]:
    """Holds the volume's fcntl lock while inside (claims, commits, removals, rollbacks)."""
    state = base / STATE_DIR
    state.mkdir(exist_ok=True)
    fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def raise_high_water_mark(base: Path, version: int) -> None:
    """Records `version` as claimed; the caller holds the volume lock."""
    if version <= read_high_water_mark(base):
        return
    _write_state_file(base, HIGH_WATER_MARK_FILE, f"{version}\n")


def _write_state_file(base: Path, name: str, text: str) -> None:
    """Replaces `name` atomically; on failure (disk full) the old file stays, no temp is left."""
    state = base / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    tmp = state / f"{name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, state / name)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(state)


def record_verified_version(base_path: str | os.PathLike, version: int) -> None:
    """Records `version` as the newest one a server reported AVAILABLE after its push."""
    _write_state_file(Path(base_path), VERIFIED_FILE, f"{version}\n")


def read_verified_version(base_path: str | os.PathLike) -> int | None:
    """Returns the newest version verified AVAILABLE after a push, or None if none was."""
    try:
        return int((Path(base_path) / STATE_DIR / VERIFIED_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def move_to_trash(base: Path, path: Path) -> Path | None:
    """Returns where `path` was renamed to in the trash (out of TF Serving's sight), or None."""
    trash = base / STATE_DIR / TRASH_DIR
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{path.name}-{secrets.token_hex(4)}"
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return None
    return target


def remove_tree_safely(base: Path, path: Path) -> None:
    """Renames `path` out of TF Serving's sight (into the trash), then deletes it.

    For directories TF Serving never loads (staging, archive): when the trash cannot be made
    (a full disk has no block for a new directory), `path` is deleted where it is instead, so
    cleaning up after a failed publish never fails itself.
    """
    try:
        target = move_to_trash(base, path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    if target is None:
        return
    with contextlib.suppress(OSError):
        fsync_dir(base)
    shutil.rmtree(target, ignore_errors=True)
