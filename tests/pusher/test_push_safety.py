"""A push never leaves the volume worse than it found it, even with no server to verify on.

The issue this pins: `push BROKEN VOL --keep 1` without `--server` used to publish a model whose
`variables/` was gone (only saved_model.pb was checked), report success, and let retention delete
the last good version outright.
"""

from __future__ import annotations

import shutil

import pytest

from tfx_serving_ext.cli import main
from tfx_serving_ext.publish import volume


def numeric_dirs(base):
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())


@pytest.fixture
def volume_with_a_good_version(tmp_path, half_plus_two_dir):
    base = tmp_path / "serving"
    assert main(["push", str(half_plus_two_dir), str(base), "--keep", "1"]) == 0
    return base


@pytest.mark.parametrize("damage", ["no-variables-dir", "no-index", "missing-shard"])
def test_a_model_missing_its_variables_is_refused_and_the_volume_is_untouched(
    tmp_path, half_plus_two_dir, volume_with_a_good_version, capsys, damage
):
    base = volume_with_a_good_version
    broken = tmp_path / "broken"
    shutil.copytree(half_plus_two_dir, broken)
    variables = broken / "variables"
    if damage == "no-variables-dir":
        shutil.rmtree(variables)
    elif damage == "no-index":
        (variables / "variables.index").unlink()
    else:
        next(variables.glob("variables.data-*")).unlink()
    capsys.readouterr()
    assert main(["push", str(broken), str(base), "--keep", "1"]) == 2
    err = capsys.readouterr().err
    assert "not pushed" in err and "TF Serving cannot load it" in err
    assert numeric_dirs(base) == [1]
    assert (base / "1" / "variables" / "variables.index").is_file()


def test_retention_archives_instead_of_deleting(tmp_path, half_plus_two_dir, capsys):
    base = tmp_path / "serving"
    for _ in range(3):
        assert main(["push", str(half_plus_two_dir), str(base), "--keep", "1"]) == 0
    assert numeric_dirs(base) == [3]
    archived = sorted((base / ".tfx_serving_ext" / "archive").iterdir())
    assert [p.name.split("-")[0] for p in archived] == ["2"]  # the archive keeps its newest 1
    assert (archived[0] / "saved_model.pb").is_file()
    assert volume.read_verified_version(base) is None  # nothing was verified by a server


def test_rollback_takes_every_spelling_of_a_version(tmp_path, half_plus_two_dir, capsys):
    """`9` and `00000009` are one version to TF Serving: archiving one left the other serving."""
    base = tmp_path / "serving"
    for name in ("8", "9", "00000009"):
        shutil.copytree(half_plus_two_dir, base / name)
    assert main(["rollback", str(base), "--to", "8"]) == 0
    assert "version 8 is now the newest" in capsys.readouterr().out
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["8"]
    assert len(list((base / ".tfx_serving_ext" / "archive").iterdir())) == 2


def test_retention_takes_every_spelling_of_a_version(tmp_path, half_plus_two_dir):
    """Retention archiving `1` but leaving `00000001` would leave version 1 on the volume."""
    base = tmp_path / "serving"
    for name in ("1", "00000001"):
        shutil.copytree(half_plus_two_dir, base / name)
    assert main(["push", str(half_plus_two_dir), str(base), "--keep", "1"]) == 0
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["2"]
    assert sorted(volume.list_versions(base)) == [2]


def test_removing_a_failed_version_takes_every_spelling(tmp_path, half_plus_two_dir):
    """The removal a failed verification does: no spelling of the version is left to load."""
    base = tmp_path / "serving"
    for name in ("8", "9", "0009"):
        shutil.copytree(half_plus_two_dir, base / name)
    volume.remove_version(base, 9)
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["8"]
    assert volume.next_version(base) == 10  # the number is burnt, never reused
