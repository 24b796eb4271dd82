"""The one model-tree walker as the volume publisher uses it: swaps after planning, specials.

A file swapped for a symlink (or a FIFO) between planning and copying must be refused, not
followed (issue 18 item 9), and the copy itself must give the same bytes and modes whichever
way the kernel copied them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tfx_serving_ext.protocol import model_tree
from tfx_serving_ext.publish import tree_copy, volume


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(3_000_000))
    (model / "run.sh").write_text("#!/bin/sh\n")
    (model / "run.sh").chmod(0o750)
    return model


def test_file_swapped_for_a_symlink_after_planning_is_refused(model_dir, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("credentials")
    plan = tree_copy.plan_copy(model_dir)
    index = model_dir / "variables" / "variables.index"
    index.unlink()
    index.symlink_to(secret)
    staging = tmp_path / "staging"
    staging.mkdir()

    with pytest.raises(volume.UnsafeModelPath, match=r"variables.index cannot be opened safely"):
        tree_copy.copy_planned(plan, staging, 0)
    assert not any(p.read_bytes() == b"credentials" for p in staging.rglob("*") if p.is_file())


def test_file_swapped_for_another_file_after_planning_is_refused(model_dir, tmp_path):
    plan = tree_copy.plan_copy(model_dir)
    index = model_dir / "variables" / "variables.index"
    index.unlink()
    index.write_bytes(b"other")
    staging = tmp_path / "staging"
    staging.mkdir()

    with pytest.raises(volume.UnsafeModelPath, match=r"changed after the model was planned"):
        tree_copy.copy_planned(plan, staging, 0)


@pytest.mark.timeout(60)
def test_file_swapped_for_a_fifo_after_planning_is_refused(model_dir, tmp_path):
    plan = tree_copy.plan_copy(model_dir)
    index = model_dir / "variables" / "variables.index"
    index.unlink()
    os.mkfifo(index)
    staging = tmp_path / "staging"
    staging.mkdir()

    with pytest.raises(volume.UnsafeModelPath, match=r"now a FIFO"):
        tree_copy.copy_planned(plan, staging, 0)


@pytest.mark.timeout(60)
def test_publish_refuses_a_fifo_naming_it(model_dir, tmp_path):
    os.mkfifo(model_dir / "variables" / "pipe")

    with pytest.raises(volume.UnsafeModelPath, match=r"variables/pipe is a FIFO"):
        volume.publish_version(model_dir, tmp_path / "serving")
    assert volume.list_versions(tmp_path / "serving") == {}


@pytest.mark.parametrize("way", ["kernel", "sendfile", "read_write"])
def test_every_copy_path_gives_the_same_bytes_and_modes(model_dir, tmp_path, monkeypatch, way):
    def unsupported(*args):
        raise OSError(95, "not supported here")

    monkeypatch.setattr(tree_copy._Copier, "_reflink", lambda self, src, dst: False)
    if way in ("sendfile", "read_write"):
        monkeypatch.setattr(tree_copy, "_by_copy_file_range", unsupported)
    if way == "read_write":
        monkeypatch.setattr(tree_copy, "_by_sendfile", unsupported)
    seen = []

    published = volume.publish_version(
        model_dir, tmp_path / "serving", progress=lambda done, total: seen.append((done, total))
    )

    for source in model_dir.rglob("*"):
        copy = published.path / source.relative_to(model_dir)
        if source.is_file():
            assert copy.read_bytes() == source.read_bytes()
        assert (copy.stat().st_mode & 0o7777) == (source.stat().st_mode & 0o7777) or source.is_dir()
    total = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert seen[-1] == (total, total) and published.bytes_copied == total


def test_fsync_fallback_when_syncfs_is_unavailable(model_dir, tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(tree_copy, "_syncfs", lambda: None)
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))

    published = volume.publish_version(model_dir, tmp_path / "serving")

    # Every file and directory of the version, plus the volume's own bookkeeping.
    assert len(synced) >= 4 + 2
    assert (published.path / "saved_model.pb").read_bytes() == b"graph"


def test_model_name_rule_is_the_volumes():
    assert model_tree.validate_model_name("penguin-1.2_b") == "penguin-1.2_b"
    with pytest.raises(model_tree.UnsafeModelPath):
        model_tree.validate_model_name("../../usr/bin")
