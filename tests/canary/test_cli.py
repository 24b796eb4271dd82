"""`tfx-serving-ext canary`: verdict on stdout, exit code, the same report files."""

from __future__ import annotations

import json

from tfx_serving_ext.cli import main


def test_canary_command_blesses_with_csv_examples(canary_models, penguin_csv, tmp_path, capsys):
    code = main(
        [
            "canary",
            str(canary_models["good"]),
            "--baseline",
            str(canary_models["good"]),
            "--examples",
            str(penguin_csv),
            "--num-examples",
            "30",
            "--requests",
            "40",
            "--output",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("BLESSED")
    assert "candidate: p50" in out and "baseline: p50" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"]["blessed"] and report["traffic"]["requests_issued"] == 40
    assert (tmp_path / "report.html").exists()


def test_canary_command_refuses_and_exits_1(canary_models, penguin_csv, tmp_path, capsys):
    code = main(
        [
            "canary",
            str(canary_models["disagree"]),
            "--baseline",
            str(canary_models["good"]),
            "--examples",
            str(penguin_csv),
            "--requests",
            "20",
            "--thresholds",
            '{"min_top_class_agreement": 0.9}',
            "--output",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("NOT BLESSED")
    assert "top class identical to the baseline on 0.0% of examples (minimum 90.0%)" in out


def test_canary_command_rejects_unreadable_examples(canary_models, tmp_path, capsys):
    bogus = tmp_path / "examples.tfrecord"
    bogus.write_bytes(b"not a tfrecord at all")
    out = str(tmp_path / "report")
    args = ["canary", str(canary_models["good"]), "--examples", str(bogus), "--output", out]
    code = main(args)
    assert code == 2
    assert "is not a TFRecord file of tf.Examples" in capsys.readouterr().err
