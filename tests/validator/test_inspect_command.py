"""`tfx-serving-ext inspect`: signatures, a readable diff, and the exit code."""

from __future__ import annotations

from tfx_serving_ext.cli import main


def test_inspect_prints_signatures_and_exits_zero(toy_models, capsys):
    assert main(["inspect", str(toy_models["baseline"])]) == 0
    out = capsys.readouterr().out
    assert "signature 'predict_xw'  method tensorflow/serving/predict" in out
    assert "    x: DT_FLOAT[-1]" in out
    assert "no breaking changes" in out


def test_inspect_against_baseline_shows_the_diff_and_fails_when_breaking(toy_models, capsys):
    code = main(
        ["inspect", str(toy_models["removed_input"]), "--against", str(toy_models["baseline"])]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL [predict_xw] input 'w' was removed" in out
    assert "BREAKING: 1 check(s) failed" in out


def test_inspect_reports_additions_as_compatible(toy_models, capsys):
    code = main(
        ["inspect", str(toy_models["no_serving_default"]), "--against", str(toy_models["retrain"])]
    )
    out = capsys.readouterr().out
    assert "+    [predict] signature 'predict' added" in out
    assert code == 1  # serving_default was dropped


def test_inspect_unreadable_model_exits_two(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert "No SavedModel found" in capsys.readouterr().err
