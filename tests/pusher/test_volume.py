"""serving.volume and serving.model_config: publishing, retention, rollback, crash safety.

These tests publish plain directory trees (the volume does not look inside a model), so they run
without TensorFlow; the server tests in test_server_push.py use real SavedModels.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tfx_serving_ext.protocol import model_config
from tfx_serving_ext.publish import volume


def make_tree(path: Path, marker: str, big_bytes: int = 0) -> Path:
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_text(marker)
    (path / "variables" / "variables.index").write_text(f"index-{marker}")
    if big_bytes:
        (path / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * big_bytes)
    return path


def numeric_dirs(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.isdigit())


def test_two_pushes_in_the_same_second_get_two_versions(tmp_path):
    base = tmp_path / "serving"
    model_a = make_tree(tmp_path / "a", "A")
    model_b = make_tree(tmp_path / "b", "B")
    first = volume.publish_version(model_a, base)
    calls = []
    second = volume.publish_version(model_b, base, progress=lambda *c: calls.append(c))
    assert calls[-1] == (second.bytes_copied, second.bytes_copied)
    assert (first.version, second.version) == (1, 2)
    assert (second.files_copied, second.bytes_copied) == (2, len("B") + len("index-B"))
    assert (base / "1" / "saved_model.pb").read_text() == "A"
    assert (base / "2" / "saved_model.pb").read_text() == "B"
    assert (base / "2" / "variables" / "variables.index").read_text() == "index-B"
    # Nothing but versions and our hidden state dir is left behind.
    assert sorted(p.name for p in base.iterdir()) == [".tfx_serving_ext", "1", "2"]


def test_version_is_above_existing_and_never_reuses_a_deleted_one(tmp_path):
    base = tmp_path / "serving"
    make_tree(base / "00000123", "old")  # written by someone else, zero padded
    model = make_tree(tmp_path / "m", "M")
    assert volume.publish_version(model, base).version == 124
    volume.remove_version(base, 124)
    assert numeric_dirs(base) == ["00000123"]
    # 124 was served once; TF Serving remembers it, so it must never come back.
    assert volume.publish_version(model, base).version == 125


def test_concurrent_publishers_in_separate_processes_get_distinct_complete_versions(tmp_path):
    base = tmp_path / "serving"
    n = 6
    models = [make_tree(tmp_path / f"m{i}", f"model-{i}", big_bytes=256 * 1024) for i in range(n)]
    script = textwrap.dedent(
        """
        import sys, time
        from tfx_serving_ext.publish import volume
        start = float(sys.argv[3])
        while time.time() < start:
            time.sleep(0.001)
        print(volume.publish_version(sys.argv[1], sys.argv[2]).version)
        """
    )
    start = str(time.time() + 1.5)  # all processes start publishing at the same instant
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(m), str(base), start],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        for m in models
    ]
    versions = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        versions.append(int(out.strip()))
    # Distinct numbers; a publisher overtaken by a later claim that finished first takes a fresh,
    # higher number at rename time, so the numbers need not be 1..n.
    assert len(set(versions)) == n
    assert numeric_dirs(base) == sorted(str(v) for v in versions)
    for i, version in enumerate(versions):
        copy = base / str(version)
        assert (copy / "saved_model.pb").read_text() == f"model-{i}"
        data = copy / "variables" / "variables.data-00000-of-00001"
        assert data.stat().st_size == 256 * 1024
    assert not [p for p in base.iterdir() if p.name.startswith(".staging-")]


def test_live_publishers_staging_dir_is_not_removed(tmp_path):
    base = tmp_path / "serving"
    base.mkdir()
    mine = base / f".staging-5-{os.getpid()}@{os.uname().nodename}-0123abcd"
    mine.mkdir()
    volume.remove_stale_staging(base)
    assert mine.is_dir()


def test_old_staging_dir_of_a_reused_pid_is_removed(tmp_path):
    # A publisher that always runs as the same pid (pid 1 in a container with a fixed hostname)
    # was killed; the pid is alive again, so only the directory's age tells it is stale.
    base = tmp_path / "serving"
    base.mkdir()
    left = base / f".staging-5-{os.getpid()}@{socket.gethostname()}-0123abcd"
    left.mkdir()
    hours_ago = time.time() - volume.STALE_STAGING_SECONDS - 60
    os.utime(left, (hours_ago, hours_ago))
    assert volume.remove_stale_staging(base) == [left]
    assert not left.exists()


def test_symlink_out_of_the_model_is_refused(tmp_path):
    base = tmp_path / "serving"
    model = make_tree(tmp_path / "m", "M")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not publish")
    (model / "assets").mkdir()
    (model / "assets" / "vocab.txt").symlink_to(secret)
    with pytest.raises(volume.UnsafeModelPath, match="outside the model directory"):
        volume.publish_version(model, base)
    assert numeric_dirs(base) == []


def test_symlink_inside_the_model_is_copied_as_content(tmp_path):
    base = tmp_path / "serving"
    model = make_tree(tmp_path / "m", "M")
    (model / "assets").mkdir()
    (model / "assets" / "vocab.txt").write_text("a\nb\n")
    (model / "assets" / "alias.txt").symlink_to(model / "assets" / "vocab.txt")
    published = volume.publish_version(model, base)
    alias = published.path / "assets" / "alias.txt"
    assert not alias.is_symlink()
    assert alias.read_text() == "a\nb\n"


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "", ".hidden"])
def test_model_names_escaping_the_base_directory_are_refused(name):
    with pytest.raises(volume.UnsafeModelPath):
        volume.validate_model_name(name)


def test_retention_keeps_newest_and_protected(tmp_path):
    base = tmp_path / "serving"
    model = make_tree(tmp_path / "m", "M")
    for _ in range(5):
        volume.publish_version(model, base)
    removed = volume.apply_retention(base, keep_versions=2, protected={1})
    assert removed == [3, 2]
    assert numeric_dirs(base) == ["1", "4", "5"]
    assert volume.apply_retention(base, keep_versions=0) == []
    # Removed versions are archived, not deleted; the archive keeps its own newest 2.
    archive = base / ".tfx_serving_ext" / "archive"
    assert sorted(p.name.split("-")[0] for p in archive.iterdir()) == ["2", "3"]
    for _ in range(2):
        volume.publish_version(model, base)
    assert volume.apply_retention(base, keep_versions=2, protected={1}) == [5, 4]
    assert sorted(p.name.split("-")[0] for p in archive.iterdir()) == ["4", "5"]
    assert list((base / ".tfx_serving_ext" / "trash").iterdir()) == []


def test_retention_never_removes_the_last_version_verified_available(tmp_path):
    base = tmp_path / "serving"
    model = make_tree(tmp_path / "m", "M")
    for _ in range(3):
        volume.publish_version(model, base)
    volume.record_verified_version(base, 1)  # 2 and 3 were pushed but never verified
    assert volume.apply_retention(base, keep_versions=1) == [2]
    assert numeric_dirs(base) == ["1", "3"]


def test_rollback_archives_newer_versions_and_never_reuses_them(tmp_path):
    base = tmp_path / "serving"
    model = make_tree(tmp_path / "m", "M")
    for _ in range(3):
        volume.publish_version(model, base)
    result = volume.rollback_versions(base)
    assert (result.current_version, result.removed_versions) == (2, [3])
    assert numeric_dirs(base) == ["1", "2"]
    assert (result.archived_to[3] / "saved_model.pb").read_text() == "M"
    result = volume.rollback_versions(base, to_version=1)
    assert numeric_dirs(base) == ["1"]
    assert volume.publish_version(model, base).version == 4
    with pytest.raises(volume.NoSuchVersion, match="not on"):
        volume.rollback_versions(base, to_version=2)


CONFIG = """
model_config_list {
  config { name: "penguin" base_path: "/serving/penguin" model_platform: "tensorflow"
           version_labels { key: "stable" value: 1 } }
  config { name: "other" base_path: "/serving/other" model_platform: "tensorflow" }
}
"""


def test_model_config_labels_are_rewritten_atomically(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(CONFIG)
    labels = model_config.set_version_labels(path, "penguin", {"canary": 2})
    assert labels == {"stable": 1, "canary": 2}
    assert model_config.read_version_labels(path, "penguin") == {"stable": 1, "canary": 2}
    assert model_config.read_version_labels(path, "other") == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.config"]  # no temp left
    assert model_config.drop_labels_on_versions(path, "penguin", {2}) == ["canary"]
    with pytest.raises(model_config.ModelConfigError, match="no model named 'nope'"):
        model_config.read_version_labels(path, "nope")
    path.write_text("model_config_list { config { nme: 1 } }")
    with pytest.raises(model_config.ModelConfigError, match="Error parsing text-format"):
        model_config.read_version_labels(path, "penguin")


def test_push_config_is_parsed_from_json_and_validated(tmp_path):
    from tfx_serving_ext.publish.push import PushConfigError, VolumePushConfig

    config = VolumePushConfig.from_json(
        json.dumps({"base_directory": str(tmp_path), "model_name": "penguin", "keep_versions": 3})
    )
    assert VolumePushConfig.from_json(config.to_json()) == config
    with pytest.raises(PushConfigError, match="unknown serving_volume"):
        VolumePushConfig.from_json('{"base_directory": "/x", "base_dir": "/y"}')
    with pytest.raises(volume.UnsafeModelPath):
        VolumePushConfig(base_directory=str(tmp_path), model_name="../etc")
    with pytest.raises(PushConfigError, match="version_labels need"):
        VolumePushConfig(base_directory=str(tmp_path), version_labels={"canary": "new"})


def test_retention_decides_under_the_lock_so_a_rollback_meanwhile_keeps_the_new_top(tmp_path):
    import threading

    base = tmp_path / "serving"
    model = make_tree(tmp_path / "m", "M")
    for _ in range(4):
        volume.publish_version(model, base)
    removed: list[int] = []
    with volume._volume_lock(base):  # a rollback to version 2 holds the lock ...
        retention = threading.Thread(
            target=lambda: removed.extend(volume.apply_retention(base, keep_versions=2))
        )
        retention.start()
        time.sleep(0.3)  # ... while retention starts and waits for it
        for version in ("4", "3"):
            os.rename(base / version, base / ".tfx_serving_ext" / f"archived-{version}")
    retention.join(timeout=10)
    # Retention sees what the rollback left (2 is now the newest): nothing older than 2 versions.
    assert removed == []
    assert numeric_dirs(base) == ["1", "2"]


def test_slow_publisher_overtaken_by_a_removed_version_still_publishes_above_it(tmp_path):
    base = tmp_path / "serving"
    model = make_tree(tmp_path / "m", "M")
    faster: list[int] = []

    def meanwhile(done, total):
        if not faster:  # a second push claims, publishes, fails and is removed while we copy
            faster.append(volume.publish_version(model, base).version)
            volume.remove_version(base, faster[0])

    slow = volume.publish_version(model, base, progress=meanwhile)
    assert slow.version > faster[0]
    assert numeric_dirs(base) == [str(slow.version)]
