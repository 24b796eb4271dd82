"""Versions on disk as TF Serving sees them: every child directory whose name is an integer.

`00000123` is version 123; `tmp`, `123.tmp` and `.staging-x` are ignored silently. There is no
completeness check, which is why the publisher builds a version under a non-numeric name and
renames it into place.
"""

from __future__ import annotations

import os
from pathlib import Path

# C's isspace() in the "C" locale, which TF's strings::SkipSpaces uses.
_C_SPACES = " \t\n\v\f\r"
_ASCII_DIGITS = frozenset("0123456789")


def parse_version(name: str) -> int | None:
    """Returns the version number a directory name stands for, or None if TF Serving ignores it.

    TF Serving parses names with `strings::safe_strto64`: surrounding C whitespace is allowed,
    an optional '-', then ASCII digits only ('+5', '²' and '٧' are not numbers to it), within
    int64. A negative number is not a version either.
    """
    text = name.strip(_C_SPACES)
    digits = text[1:] if text.startswith("-") else text
    if not digits or not set(digits) <= _ASCII_DIGITS:
        return None
    value = int(text)
    if value < 0 or value >= 2**63:
        return None
    return value


def version_spellings(base_path: str | os.PathLike) -> dict[int, list[Path]]:
    """Returns {version: [directories]}: every directory TF Serving takes for each version.

    One number can be spelled several ways (`9` and `00000009`); TF Serving sees one version,
    so whatever removes or archives a version must take every spelling of it.

    Raises:
        FileNotFoundError: `base_path` does not exist (TF Serving logs this and unloads nothing).
    """
    spellings: dict[int, list[Path]] = {}
    with os.scandir(base_path) as entries:
        for entry in entries:
            version = parse_version(entry.name)
            if version is not None and entry.is_dir():
                spellings.setdefault(version, []).append(Path(entry.path))
    return {v: sorted(paths, key=lambda p: p.name) for v, paths in spellings.items()}


def list_versions(base_path: str | os.PathLike) -> dict[int, Path]:
    """Returns {version: directory} for every version directory under `base_path`.

    Of two spellings of one number (12 and 012) the first by name is given, deterministically.

    Raises:
        FileNotFoundError: `base_path` does not exist (TF Serving logs this and unloads nothing).
    """
    return {v: paths[0] for v, paths in version_spellings(base_path).items()}
