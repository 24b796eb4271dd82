"""Copying a model tree safely: symlinks only within the tree, every file and directory fsynced.

Usage:
    plan = plan_copy(model_dir)            # raises UnsafeModelPath on links out of the tree
    copy_planned(plan, staging_dir, total=sum(size for _, _, size in plan if size > 0))
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

COPY_CHUNK = 4 * 1024 * 1024

# progress(bytes_copied_so_far, total_bytes)
ProgressCallback = Callable[[int, int], None]


class UnsafeModelPath(ValueError):
    """A model file, symlink or name would read or write outside the tree it belongs to."""


def plan_copy(source: Path) -> list[tuple[Path, Path, int]]:
    """Returns [(path to read, relative destination, size or -1 for a directory)] for a tree.

    Symlinks are followed only when they resolve inside the model tree (their content is copied,
    so the version is self-contained); anything else is refused.
    """
    root = source.resolve()
    plan: list[tuple[Path, Path, int]] = []

    def visit(directory: Path, relative: Path, stack: tuple[Path, ...]) -> None:
        for entry in sorted(directory.iterdir()):
            rel = relative / entry.name
            real = entry.resolve()
            if entry.is_symlink() and not real.is_relative_to(root):
                raise UnsafeModelPath(
                    f"{source / rel} is a symlink to {real}, outside the model directory "
                    f"{root}; copy the file into the model instead of linking it"
                )
            if real.is_dir():
                if real in stack:
                    raise UnsafeModelPath(f"{source / rel} is a symlink loop back to {real}")
                plan.append((real, rel, -1))  # a directory to create
                visit(real, rel, (*stack, real))
            elif real.is_file():
                plan.append((real, rel, real.stat().st_size))
            else:
                raise UnsafeModelPath(
                    f"{source / rel} is neither a file nor a directory (or a dangling symlink)"
                )

    visit(root, Path(), (root,))
    return plan


def copy_planned(
    plan: list[tuple[Path, Path, int]],
    staging: Path,
    total: int,
    progress: ProgressCallback | None = None,
) -> int:
    """Returns the bytes copied from `plan` into the existing, empty directory `staging`.

    Every file and directory is fsynced, so a rename after this publishes complete data.
    """
    copied = 0
    dirs = [staging]
    for src, rel, size in plan:
        dest = staging / rel
        if size < 0:
            dest.mkdir()
            dirs.append(dest)
            continue
        with open(src, "rb") as fin, open(dest, "xb") as fout:
            while chunk := fin.read(COPY_CHUNK):
                fout.write(chunk)
                copied += len(chunk)
                if progress:
                    progress(copied, total)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copymode(src, dest)
    if progress and not plan:
        progress(0, 0)
    for directory in reversed(dirs):
        fsync_dir(directory)
    return copied


def fsync_dir(path: Path) -> None:
    """Flushes a directory's entries (new names, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
