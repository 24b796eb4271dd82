"""`tfx-serving-ext versions / push / rollback` on a serving volume, without a server."""

from __future__ import annotations

from tests.pusher.conftest import model_artifact
from tfx_serving_ext.cli import main


def test_push_versions_rollback_round_trip(tmp_path, half_plus_two_dir, capsys):
    base = tmp_path / "serving"
    artifact_uri = tmp_path / "model"
    model_artifact(artifact_uri, half_plus_two_dir)  # the TFX Trainer layout is accepted too
    for _ in range(3):
        assert main(["push", str(artifact_uri), str(base), "--keep", "2"]) == 0
    out = capsys.readouterr().out
    assert "version 3 at" in out and "removed by retention: [1]" in out
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["2", "3"]

    assert main(["versions", str(base)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["3", "2"]
    assert lines[-1] == "next version: 4"

    assert main(["rollback", str(base)]) == 0
    assert "version 2 is now the newest" in capsys.readouterr().out
    assert sorted(p.name for p in base.iterdir() if p.name.isdigit()) == ["2"]
    assert main(["rollback", str(base)]) == 2  # nothing below 2 any more
    assert main(["versions", str(base)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "next version: 4"


def test_push_refuses_escaping_model_name_and_non_models(tmp_path, half_plus_two_dir, capsys):
    base = tmp_path / "serving"
    assert main(["push", str(half_plus_two_dir), str(base), "--model-name", "../up"]) == 2
    assert "model name '../up' is not allowed" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["push", str(tmp_path / "empty"), str(base)]) == 2
    assert "No SavedModel found" in capsys.readouterr().err
    assert not base.exists() or not [p for p in base.iterdir() if p.name.isdigit()]


def test_push_with_a_model_config_lacking_the_model_publishes_nothing(
    tmp_path, half_plus_two_dir, capsys
):
    base = tmp_path / "serving"
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "other" base_path: "/x" } }')
    args = ["push", str(half_plus_two_dir), str(base), "--model-config-file", str(config),
            "--model-name", "m", "--keep", "1"]  # fmt: skip
    assert main(args) == 2
    assert "has no model named 'm'" in capsys.readouterr().err
    assert not base.exists() or not [p for p in base.iterdir() if p.name.isdigit()]


def test_a_malformed_fleet_is_one_error_line_and_nothing_published(
    tmp_path, half_plus_two_dir, capsys
):
    base = tmp_path / "serving"
    base.mkdir()
    fleet = ["--fleet", "dns:///localhost"]  # no port: checked before any lookup
    assert main(["versions", str(base), *fleet]) == 2
    err = capsys.readouterr().err
    assert "fleet entry 'dns:///localhost' has no port" in err and "Traceback" not in err
    # A malformed fleet is the user's input refused (exit 2), before anything is published.
    assert main(["push", str(half_plus_two_dir), str(base), *fleet]) == 2
    captured = capsys.readouterr()
    assert "fleet entry 'dns:///localhost' has no port" in captured.err
    assert "dns:///name:port" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not [p for p in base.iterdir() if p.name.isdigit()]
