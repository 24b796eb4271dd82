"""A full or read-only volume: the commands say so in one line, with their own exit code.

Issue 18 item 8: on a full disk the volume stayed intact, but `push` printed a raw traceback,
exited 1 (the code of a failed verification) and left `.tfx_serving_ext/high_water_mark.<pid>.tmp`
behind. Here the volume is a real small filesystem (tmpfs, and ext4 on a loop device, where even
a new directory needs a free block) filled up for real; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.pusher.small_filesystem import PAGE, fill, free_all, mounted, tree_listing
from tfx_serving_ext.cli import main
from tfx_serving_ext.commands._exit_codes import EXIT_IO_ERROR, EXIT_OK
from tfx_serving_ext.publish import volume

NOBODY = 65534


@pytest.fixture(params=["tmpfs", "ext4"])
def small_fs(request, tmp_path):
    with mounted(request.param, tmp_path / "mnt") as mount:
        yield mount


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_clean(base, before):
    """The volume holds exactly what it held before: no staging, no temporary file, no trash."""
    after = tree_listing(base)
    leftovers = sorted(set(after) - set(before))
    # An empty trash directory may be made on the way out; nothing may be in it.
    assert [p for p in leftovers if p != ".tfx_serving_ext/trash"] == [], leftovers
    assert {k: v for k, v in after.items() if k in before} == before


def test_push_onto_a_full_disk_says_so_and_leaves_the_volume_as_it_was(
    small_fs, half_plus_two_dir, capsys
):
    base = small_fs / "serving"
    assert main(["push", str(half_plus_two_dir), str(base), "--keep", "2"]) == EXIT_OK
    fill(small_fs)
    before = tree_listing(base)
    capsys.readouterr()

    assert main(["push", str(half_plus_two_dir), str(base), "--keep", "2"]) == EXIT_IO_ERROR

    captured = capsys.readouterr()
    assert captured.out == ""  # nothing claims a result
    # The step's line, the one error line, where the log is: no traceback, no log tail.
    step, line, log = captured.err.splitlines()
    assert step.startswith(f"Publishing a new version on {base}: FAILED after")
    assert step.endswith(": I/O error")
    assert log.startswith("log: ")
    assert line.startswith("error: I/O error: no space left on the device")
    assert f"no new version is on the volume; the versions on {base} are as they were (1)" in line
    assert line.endswith("free space on that filesystem and push again")
    assert_clean(base, before)
    assert not list(base.rglob("*.tmp"))

    free_all(small_fs)
    assert main(["push", str(half_plus_two_dir), str(base), "--keep", "2"]) == EXIT_OK
    assert sorted(volume.list_versions(base)) == [1, 2]


def test_a_disk_filling_up_during_the_copy_leaves_no_partial_version(
    small_fs, half_plus_two_dir, capsys
):
    base = small_fs / "serving"
    assert main(["push", str(half_plus_two_dir), str(base)]) == EXIT_OK
    files = [p for p in half_plus_two_dir.rglob("*") if p.is_file()]
    pages = sum(-(-p.stat().st_size // PAGE) for p in files)
    assert len(files) >= 3 and pages >= 4
    # Room for the claim (the high-water mark) and most of the copy, not for all of it.
    fill(small_fs, leave_pages=pages - 1)
    before = tree_listing(base)
    capsys.readouterr()

    assert main(["push", str(half_plus_two_dir), str(base)]) == EXIT_IO_ERROR

    err = capsys.readouterr().err
    [line] = error_lines(err)
    assert "no space left on the device" in line and "no new version is on the volume" in line
    assert "Traceback" not in err
    assert sorted(volume.list_versions(base)) == [1]
    assert not [p for p in base.iterdir() if p.name.startswith(volume.STAGING_PREFIX)]
    assert not list(base.rglob("*.tmp"))
    trash = base / ".tfx_serving_ext" / "trash"
    assert not trash.exists() or not list(trash.iterdir())
    # The claimed number may be burnt (a raised high-water mark); nothing else changed.
    before[".tfx_serving_ext/high_water_mark"] = b"2\n"
    assert_clean(base, before)


def test_read_only_volume_push_rollback_versions(tmp_path, half_plus_two_dir, capsys):
    """A volume mounted read-only: push and rollback are I/O errors, listing still works."""
    with mounted("tmpfs", tmp_path / "mnt") as mount:
        base = mount / "serving"
        for _ in range(2):
            assert main(["push", str(half_plus_two_dir), str(base)]) == EXIT_OK
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, timeout=60)
        before = tree_listing(base)
        capsys.readouterr()

        assert main(["push", str(half_plus_two_dir), str(base)]) == EXIT_IO_ERROR
        [line] = error_lines(capsys.readouterr().err)
        assert line.startswith("error: I/O error: the filesystem is read-only")
        assert line.endswith("mount it read-write and push again")

        assert main(["rollback", str(base)]) == EXIT_IO_ERROR
        captured = capsys.readouterr()
        [line] = error_lines(captured.err)
        assert "the filesystem is read-only" in line
        assert f"nothing was moved; the versions on {base} are as they were (1, 2)" in line
        assert captured.out == ""

        assert main(["versions", str(base)]) == EXIT_OK
        assert capsys.readouterr().out.splitlines()[-1] == "next version: 3"
        assert tree_listing(base) == before


def test_help_lists_the_exit_codes(capsys):
    for command in ("push", "rollback", "versions"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "\nexit codes:\n  0  " in text, command
        assert "\n  2  refused" in text and "\n  3  I/O error" in text, command
        if command == "push":
            assert "\n  1  the server did not serve it" in text


@pytest.fixture
def as_nobody():
    """Runs the block with the effective uid/gid of `nobody` (root only), then restores root."""
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("switching to another user needs root (CI=true: a failure)")
        pytest.skip("switching to another user needs root")

    @contextlib.contextmanager
    def switched():
        os.setegid(NOBODY)
        os.seteuid(NOBODY)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    return switched


def test_a_volume_the_user_may_not_write_is_an_io_error(half_plus_two_dir, as_nobody, capsys):
    """Pushing or rolling back as a user without write permission on the volume."""
    shared = Path(tempfile.mkdtemp(prefix="tfx-serving-ext-perm-"))  # /tmp: others may enter
    try:
        shared.chmod(0o755)
        model = shared / "model"
        shutil.copytree(half_plus_two_dir, model)
        logs = shared / "logs"
        logs.mkdir(mode=0o777)
        logs.chmod(0o777)
        base = shared / "serving"
        for _ in range(2):
            assert main(["push", str(model), str(base)]) == EXIT_OK  # as root
        before = tree_listing(base)
        capsys.readouterr()
        with as_nobody():
            pushed = main(["--log-file", str(logs / "push.log"), "push", str(model), str(base)])
            push_err = capsys.readouterr().err
            rolled = main(["rollback", str(base)])
            rollback_err = capsys.readouterr().err
            listed = main(["versions", str(base)])
        assert pushed == EXIT_IO_ERROR, push_err
        [line] = error_lines(push_err)
        assert line.startswith("error: I/O error: permission denied")
        assert "no new version is on the volume" in line
        assert line.endswith("run as a user who may write there and push again")
        assert rolled == EXIT_IO_ERROR, rollback_err
        [line] = error_lines(rollback_err)
        assert "permission denied" in line and "nothing was moved" in line
        assert listed == EXIT_OK  # reading needs no write permission
        assert capsys.readouterr().out.splitlines()[-1] == "next version: 3"
        assert tree_listing(base) == before
    finally:
        shutil.rmtree(shared, ignore_errors=True)
