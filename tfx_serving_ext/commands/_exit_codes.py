"""Exit codes of the serving-volume commands (push, rollback, versions) and their error lines.

A script driving a push must tell apart a model that was refused (fix the model or the
arguments), a server that did not serve it (look at the server) and an I/O error (disk full,
permission denied, a read-only volume: fix the storage). Each gets its own code, the same in
every volume command, listed in each command's `--help`, and one line on stderr saying what
went wrong and what to do, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

EXIT_OK = 0
EXIT_FAILED_VERIFICATION = 1
EXIT_REFUSED = 2
EXIT_IO_ERROR = 3

EXIT_CODES_TITLE = "exit codes:"

# What the user should read for the errnos a volume meets; others fall back to strerror.
_IO_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (the disk or the network filesystem failed)",
}


class HelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps the exit-code table's lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(EXIT_CODES_TITLE):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def exit_codes_epilog(**meanings: str) -> str:
    """Returns the `--help` table of exit codes, e.g. exit_codes_epilog(ok=..., refused=...).

    Keys: ok, failed_verification, refused, io_error; a command lists only the ones it uses.
    """
    codes = {
        "ok": EXIT_OK,
        "failed_verification": EXIT_FAILED_VERIFICATION,
        "refused": EXIT_REFUSED,
        "io_error": EXIT_IO_ERROR,
    }
    lines = [EXIT_CODES_TITLE]
    for key, meaning in meanings.items():
        lines.append(f"  {codes[key]}  {meaning}")
    return "\n".join(lines) + "\n"


def describe_io_error(exc: OSError) -> str:
    """Returns what an OSError means for the volume, e.g. "no space left on the device (/v/x)"."""
    what = _IO_ERRORS.get(exc.errno) or exc.strerror or str(exc)
    if exc.filename:
        what += f" ({os.fsdecode(exc.filename)})"
    return what


def io_error_remedy(exc: OSError) -> str:
    """Returns what to do about an OSError, e.g. "free space on that filesystem"."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space on that filesystem"
    if exc.errno == errno.EROFS:
        return "mount it read-write"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "run as a user who may write there"
    return "check the storage"


def versions_on(base_dir: str | os.PathLike) -> list[int] | None:
    """Returns the versions on the volume, or None when they cannot be listed."""
    from tfx_serving_ext.protocol.versions import list_versions

    try:
        return sorted(list_versions(base_dir))
    except OSError:
        return None


def io_error_line(
    exc: OSError, base_dir: str, before: list[int] | None, *, unchanged: str, again: str
) -> str:
    """Returns the one line for an I/O error: what failed, what the volume holds, what to do.

    Args:
        exc: the error.
        base_dir: the serving volume.
        before: its versions before the command ran (`versions_on`).
        unchanged: what to say when the versions are as they were ("no new version is on
            the volume").
        again: what to do once the storage is fixed ("push again").
    """
    after = versions_on(base_dir)
    if after == before:
        listed = ", ".join(map(str, after)) if after else "none"
        state = f"{unchanged}; the versions on {base_dir} are as they were ({listed})"
    else:
        state = f"the versions on {base_dir} are now {after} (were {before})"
    return f"I/O error: {describe_io_error(exc)}: {state}; {io_error_remedy(exc)} and {again}"


def print_error(message: str, stream=None) -> None:
    """Prints the command's one error line (on stderr by default)."""
    print(f"error: {message}", file=stream or sys.stderr, flush=True)
