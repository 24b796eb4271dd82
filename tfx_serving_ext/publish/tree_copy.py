"""Copying a model tree at disk speed and durably: symlinks only within the tree, all on disk.

The tree is walked by `protocol.model_tree` (the one walker the image builder uses too), so
links out of the tree, FIFOs, devices, sockets and loops are refused, and every file is opened
with `O_NOFOLLOW` and checked to be the one planned. File data never passes through Python when
the kernel can copy it: a reflink (`FICLONE`) where the filesystem shares extents, else
`copy_file_range`, else `sendfile`, else a read/write loop.

Durability is one `syncfs` of the staging directory's filesystem (Linux >= 5.8 reports
writeback errors through it): one journal commit instead of one per file and directory. Where
`syncfs` is unavailable or cannot report errors, files and directories are fsynced with the
fsyncs overlapped in a few threads, so the filesystem can commit them together.

Usage:
    plan = plan_copy(model_dir)            # raises UnsafeModelPath on links out of the tree
    copy_planned(plan, staging_dir, total=sum(e.size for e in plan if not e.is_dir))
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tfx_serving_ext.protocol.model_tree import (
    TreeEntry,
    UnsafeModelPath,
    open_entry_fd,
    walk_model_tree,
)

__all__ = [
    "COPY_CHUNK",
    "ProgressCallback",
    "TreeEntry",
    "UnsafeModelPath",
    "copy_planned",
    "fsync_dir",
    "plan_copy",
    "sync_filesystem",
]

# Bytes per kernel copy call (and per progress report); the fallback's buffer is smaller.
COPY_CHUNK = 64 * 1024 * 1024
_FALLBACK_BUFFER = 1024 * 1024
_FSYNC_THREADS = 8
_COPY_THREADS = 4
_BATCH = 32  # files per copy task: small enough to spread, large enough to amortise a task
_FICLONE = 0x40049409  # _IOW(0x94, 9, int): share the source's extents (btrfs, XFS, bcachefs)
# errnos meaning "this way of copying is not available here", not "the copy failed".
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY}

# progress(bytes_copied_so_far, total_bytes)
ProgressCallback = Callable[[int, int], None]


def plan_copy(source: Path) -> list[TreeEntry]:
    """Returns the directories and files to copy from `source`, parents first.

    Symlinks are followed only when they resolve inside the model tree (their content is copied,
    so the version is self-contained); anything else is refused.

    Raises:
        UnsafeModelPath: a link out of the tree, a loop, a FIFO/device/socket, an unreadable path.
    """
    return walk_model_tree(source)


def copy_planned(
    plan: list[TreeEntry],
    staging: Path,
    total: int,
    progress: ProgressCallback | None = None,
) -> int:
    """Returns the bytes copied from `plan` into the existing, empty directory `staging`.

    Directories are created first, then files are copied by a few threads (the kernel does the
    copying; the threads overlap the per-file system calls of a model of many small files).
    Everything copied is on disk when this returns, so a rename after it publishes complete data.

    Raises:
        UnsafeModelPath: a planned file was swapped (for a symlink, FIFO, other file) since.
        OSError: the copy or the flush to disk failed (disk full, I/O error).
    """
    staging = Path(staging)
    # Opened before writing: syncfs reports writeback errors seen since this descriptor opened.
    staging_fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dirs = [staging]
        for entry in plan:
            if entry.is_dir:
                dirs.append(staging / entry.relative)
                dirs[-1].mkdir()
        files = [entry for entry in plan if not entry.is_dir]
        copier = _Copier(str(staging), total, progress)
        if len(files) <= 1:
            for entry in files:
                copier.copy(entry)
        else:
            batches = [files[i : i + _BATCH] for i in range(0, len(files), _BATCH)]
            with ThreadPoolExecutor(_COPY_THREADS, thread_name_prefix="copy") as pool:
                # list() re-raises the first failure; the executor waits for the rest.
                list(pool.map(copier.copy_batch, batches))
        if progress and not files:
            progress(0, total)
        if not sync_filesystem(staging_fd):
            _fsync_all([staging / entry.relative for entry in files], dirs)
    finally:
        os.close(staging_fd)
    return copier.copied


def sync_filesystem(fd: int) -> bool:
    """Returns True once the filesystem holding `fd` is flushed to disk by one `syncfs`.

    Returns False (nothing done) where `syncfs` is missing or, before Linux 5.8, would not
    report writeback errors; the caller then fsyncs file by file.

    Raises:
        OSError: the flush failed (an I/O error while writing back).
    """
    syncfs = _syncfs()
    if syncfs is None:
        return False
    if syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syncfs failed: {os.strerror(err)}")
    return True


def fsync_dir(path: Path) -> None:
    """Flushes a directory's entries (new names, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- internals -----------------------------------------------------------------------------


class _Copier:
    """Copies planned files into one staging directory, counting bytes for progress."""

    def __init__(self, staging: str, total: int, progress: ProgressCallback | None) -> None:
        self.staging, self.total, self.progress = staging, total, progress
        self.copied = 0
        self.reflink: bool | None = None  # unknown until the first file is tried
        self._lock = threading.Lock()

    def copy_batch(self, entries: list[TreeEntry]) -> None:
        for entry in entries:
            self.copy(entry)

    def copy(self, entry: TreeEntry) -> None:
        src = open_entry_fd(entry)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            dst = os.open(f"{self.staging}/{entry.relative}", flags, 0o600)
            try:
                if not (self.reflink is not False and self._reflink(src, dst)):
                    _kernel_copy(src, dst, self.add)
                os.fchmod(dst, entry.mode)
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def add(self, n: int) -> None:
        with self._lock:
            self.copied += n
            if self.progress:
                # Under the lock: reports arrive in order, and a slow callback holds the copy.
                self.progress(self.copied, self.total)

    def _reflink(self, src: int, dst: int) -> bool:
        """Returns True once `dst` shares `src`'s extents; False where it cannot (remembered)."""
        try:
            fcntl.ioctl(dst, _FICLONE, src)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED | {errno.EBADF, errno.EPERM}:
                raise
            self.reflink = False
            return False
        self.reflink = True
        self.add(os.fstat(dst).st_size)
        return True


def _kernel_copy(src: int, dst: int, add: Callable[[int], None]) -> None:
    """Copies `src` to `dst` by the fastest way that works, calling `add(n)` as bytes land.

    Each way continues from the file positions the previous one left, so a fallback midway
    neither skips nor repeats bytes.
    """
    for way in (_by_copy_file_range, _by_sendfile, _by_read_write):
        try:
            while n := way(src, dst):
                add(n)
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED or way is _by_read_write:
                raise


def _by_copy_file_range(src: int, dst: int) -> int:
    return os.copy_file_range(src, dst, COPY_CHUNK)


def _by_sendfile(src: int, dst: int) -> int:
    return os.sendfile(dst, src, None, COPY_CHUNK)


def _by_read_write(src: int, dst: int) -> int:
    chunk = os.read(src, _FALLBACK_BUFFER)
    view = memoryview(chunk)
    while view:
        view = view[os.write(dst, view) :]
    return len(chunk)


def _fsync_all(files: list[Path], dirs: list[Path]) -> None:
    """fsyncs every file, then every directory (deepest first), with the fsyncs overlapped."""

    def fsync_path(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    with ThreadPoolExecutor(_FSYNC_THREADS, thread_name_prefix="fsync") as pool:
        list(pool.map(fsync_path, files))
    for directory in reversed(dirs):
        fsync_dir(directory)


def _syncfs():
    """Returns libc's syncfs where it reports writeback errors (Linux >= 5.8), else None."""
    if platform.system() != "Linux":
        return None
    try:
        major, minor = (int(part) for part in platform.release().split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (5, 8):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        return None
    syncfs.argtypes = [ctypes.c_int]
    syncfs.restype = ctypes.c_int
    return syncfs
