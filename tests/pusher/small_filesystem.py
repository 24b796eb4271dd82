"""Small real filesystems to fill up: a tmpfs, or ext4 on a loop device (root only).

A full disk is produced the way an operator meets it: the filesystem really has no free block,
so every write, mkdir and fsync of the code under test gets ENOSPC from the kernel, not from a
mock. Mounted under the test's tmp_path and unmounted in teardown.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

PAGE = 4096
FILLER_DIR = "filler"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing piece is a failure)")
    pytest.skip(reason)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@contextlib.contextmanager
def mounted(kind: str, where: Path, size_kib: int = 2048) -> Iterator[Path]:
    """Yields `where` with a fresh `kind` ("tmpfs" or "ext4") filesystem of `size_kib` on it."""
    if os.geteuid() != 0:
        _unavailable("mounting a small filesystem needs root")
    where.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "tmpfs":
            _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where))
        else:
            if not (shutil.which("mkfs.ext4") and shutil.which("losetup")):
                _unavailable("ext4 on a loop device needs mkfs.ext4 and losetup (e2fsprogs)")
            image = where.with_name(where.name + ".img")
            with open(image, "wb") as f:
                f.truncate(size_kib * 1024)
            # 4 KiB blocks (one per page-sized write), no blocks reserved for root.
            _run("mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", str(image))
            _run("mount", "-o", "loop", str(image), str(where))
    except subprocess.CalledProcessError as exc:
        _unavailable(f"cannot mount {kind}: {exc.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        result = subprocess.run(["umount", str(where)], capture_output=True, timeout=60)
        if result.returncode != 0:  # something still holds it: detach it lazily
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=60)
        if kind != "tmpfs":
            with contextlib.suppress(FileNotFoundError):
                where.with_name(where.name + ".img").unlink()


def fill(mount: Path, *, leave_pages: int = 0) -> int:
    """Returns the pages written to fill `mount` up, leaving `leave_pages` free 4 KiB pages.

    Filler files of one page each, so that deleting some frees exactly that many.
    """
    filler = mount / FILLER_DIR
    filler.mkdir(exist_ok=True)
    pages = 0
    while True:
        path = filler / f"{pages:06d}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            break
        try:
            written = os.write(fd, b"\0" * PAGE)
            os.fsync(fd)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            written = 0
        finally:
            os.close(fd)
        if written < PAGE:
            path.unlink()
            break
        pages += 1
    for index in range(pages - 1, max(-1, pages - 1 - leave_pages), -1):
        (filler / f"{index:06d}").unlink()
    os.sync()
    return pages


def free_all(mount: Path) -> None:
    """Deletes the filler again, giving the space back."""
    shutil.rmtree(mount / FILLER_DIR, ignore_errors=True)
    os.sync()


def tree_listing(base: Path) -> dict[str, bytes | None]:
    """Returns {relative path: file bytes, or None for a directory} of everything under `base`."""
    listing: dict[str, bytes | None] = {}
    for path in sorted(base.rglob("*")):
        relative = str(path.relative_to(base))
        listing[relative] = None if path.is_dir() else path.read_bytes()
    return listing
