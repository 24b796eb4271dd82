"""Returns the files of a model directory that are safe to read: the one walker of a model tree.

Both the serving-volume publisher and the Cloud Run image builder read a SavedModel through
this module, so both refuse the same things:

- a symlink that leads outside the model directory (its target would be published or put in
  an image layer: `variables/passwd -> /etc/passwd`), a dangling symlink, a symlink loop;
- anything that is neither a regular file nor a directory (a FIFO would hang the reader, a
  device or a socket is never part of a model);
- a file swapped after the walk: `open_entry` opens with `O_NOFOLLOW | O_NONBLOCK` and checks
  that the file opened is the one planned (same device, inode and change time), so a file
  replaced by a symlink, a FIFO or another file, or rewritten, between planning and reading is
  refused, not followed.

Symlinks inside the tree are resolved: their target's content is read under the link's name,
so what is published is self-contained.

Usage:
    entries = walk_model_tree("/pipeline/Trainer/model/7/Format-Serving")
    for entry in entries:
        if not entry.is_dir:
            with open_entry(entry) as f:
                data = f.read()
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import BinaryIO, NamedTuple

# TF Serving's REST routes take the model name as one path segment; as a directory name on a
# volume or in an image layer it must also be one safe path component.
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


class UnsafeModelPath(ValueError):
    """A model file, symlink or name would read or write outside the tree it belongs to."""


class TreeEntry(NamedTuple):
    """One directory or regular file of a model tree, as planned by `walk_model_tree`.

    A named tuple of plain strings: a model of many small files is walked at the speed of its
    `lstat` calls, not of building path objects.
    """

    source: str  # the real path to read (an in-tree symlink's target)
    relative: str  # the name under the tree's root, "/"-separated ("." is never listed)
    size: int  # bytes, or -1 for a directory
    mode: int  # permission bits of the source
    device: int
    inode: int
    # The inode's change time: a file rewritten (or a new file on a reused inode) differs.
    changed_ns: int

    @property
    def is_dir(self) -> bool:
        return self.size < 0


def validate_model_name(model_name: str) -> str:
    """Returns `model_name` if it is safe as a single path component and a TF Serving name.

    Raises:
        UnsafeModelPath: the name is empty, holds a separator or `..`, or starts with a dot.
    """
    if not _MODEL_NAME_RE.fullmatch(model_name or "") or ".." in model_name:
        raise UnsafeModelPath(
            f"model name {model_name!r} is not allowed: use letters, digits, '.', '_' and '-' "
            "only, starting with a letter or digit, with no '..' or path separators"
        )
    return model_name


def walk_model_tree(model_dir: str | os.PathLike) -> list[TreeEntry]:
    """Returns every directory and regular file under `model_dir`, parents first, sorted by name.

    Raises:
        UnsafeModelPath: a symlink leads outside the tree, dangles or loops; an entry is a FIFO,
            device or socket; or an entry cannot be read (the message names the path).
    """
    shown = Path(model_dir)
    root = Path(os.path.realpath(shown))
    try:
        root_stat = os.stat(root)
    except OSError as exc:
        raise UnsafeModelPath(f"model directory {shown} cannot be read: {exc.strerror}") from exc
    if not stat.S_ISDIR(root_stat.st_mode):
        raise UnsafeModelPath(f"model directory {shown} is not a directory")
    entries: list[TreeEntry] = []
    # Iterative, so a deep tree cannot exhaust Python's recursion limit.
    pending = [(str(root), "", ((root_stat.st_dev, root_stat.st_ino),))]
    while pending:
        directory, relative, ancestors = pending.pop()
        children = []
        try:
            with os.scandir(directory) as listing:
                items = sorted((item.name, item.path) for item in listing)
        except OSError as exc:
            raise UnsafeModelPath(f"{shown / relative} cannot be listed: {exc.strerror}") from exc
        for name, path in items:
            rel = f"{relative}/{name}" if relative else name
            real, st = _resolve_entry(root, path, shown, rel)
            mode = st.st_mode
            if stat.S_ISREG(mode):
                entries.append(
                    TreeEntry(
                        real, rel, st.st_size, mode & 0o7777, st.st_dev, st.st_ino, st.st_ctime_ns
                    )
                )
            elif stat.S_ISDIR(mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise UnsafeModelPath(
                        f"{shown / rel} is a symlink loop back to {real}; remove the link"
                    )
                entries.append(TreeEntry(real, rel, -1, mode & 0o7777, *key, st.st_ctime_ns))
                children.append((real, rel, (*ancestors, key)))
            else:
                raise UnsafeModelPath(
                    f"{shown / rel} is a {_kind(mode)}, not a file or directory; a model "
                    "holds only regular files and directories"
                )
        pending.extend(reversed(children))
    return entries


def open_entry_fd(entry: TreeEntry) -> int:
    """Returns a read-only descriptor of the planned file `entry`, refusing any swap since.

    Raises:
        UnsafeModelPath: the file is now a symlink, a FIFO or another file than the one planned.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(entry.source, flags)
    except OSError as exc:
        raise UnsafeModelPath(
            f"{entry.source} cannot be opened safely ({exc.strerror}): it was replaced by a "
            "symlink or removed after the model was planned; publish again from a stable tree"
        ) from exc
    st = os.fstat(fd)
    planned = (entry.device, entry.inode, entry.changed_ns)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino, st.st_ctime_ns) != planned:
        os.close(fd)
        raise UnsafeModelPath(
            f"{entry.source} changed after the model was planned (now a {_kind(st.st_mode)}, "
            "rewritten or replaced); publish again from a tree nothing is writing to"
        )
    return fd


def open_entry(entry: TreeEntry) -> BinaryIO:
    """Returns the planned file `entry` open for binary reading (see `open_entry_fd`)."""
    return os.fdopen(open_entry_fd(entry), "rb")


def _resolve_entry(root: Path, path: str, shown: Path, rel: str) -> tuple[str, os.stat_result]:
    """Returns (real path, its stat) for one child, refusing links out of the tree."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise UnsafeModelPath(f"{shown / rel} cannot be read: {exc.strerror}") from exc
    if not stat.S_ISLNK(st.st_mode):
        return path, st
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise UnsafeModelPath(
            f"{shown / rel} is a symlink to {real}, outside the model directory {root}; copy the "
            "file into the model instead of linking it"
        )
    try:
        return str(real), os.stat(real)
    except OSError as exc:  # ELOOP, ENOENT (dangling), EACCES
        raise UnsafeModelPath(
            f"{shown / rel} is a symlink that cannot be followed ({exc.strerror}): a dangling "
            "link or a symlink loop"
        ) from exc


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "special file"
