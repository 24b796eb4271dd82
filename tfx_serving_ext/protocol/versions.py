"""Versions on disk as TF Serving sees them: every child directory whose name is an integer.

`00000123` is version 123; `tmp`, `123.tmp` and `.staging-x` are ignored silently. There is no
completeness check, which is why the publisher builds a version under a non-numeric name and
renames it into place.
"""

from __future__ import annotations

import os
from pathlib import Path


def parse_version(name: str) -> int | None:
    """Returns the version number a directory name stands for, or None if TF Serving ignores it."""
    # TF Serving uses strings::safe_strto64: optional sign, decimal digits only, fits in int64.
    if not name or not (name.isdigit() or (name[0] in "+-" and name[1:].isdigit())):
        return None
    value = int(name)
    if value < 0 or value >= 2**63:
        return None
    return value


def list_versions(base_path: str | os.PathLike) -> dict[int, Path]:
    """Returns {version: directory} for every version directory under `base_path`.

    Raises:
        FileNotFoundError: `base_path` does not exist (TF Serving logs this and unloads nothing).
    """
    base = Path(base_path)
    versions: dict[int, Path] = {}
    with os.scandir(base) as entries:
        for entry in entries:
            version = parse_version(entry.name)
            if version is None or not entry.is_dir():
                continue
            # Two spellings of one number (12 and 012): TF Serving keeps one; be deterministic.
            if version not in versions or entry.name < versions[version].name:
                versions[version] = Path(entry.path)
    return versions
