"""The foundation: the penguin trainer, the pipeline under LocalDagRunner, the demo, the CLI.

The demo runs once for this module, in a pseudo-terminal, as a person running `make demo` sees it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.penguin import model as penguin_model
from tests.cli.terminal_capture import log_lines, run_in_terminal, screen_lines
from tfx_serving_ext.protocol.saved_model import find_serving_model_dir, read_signature_defs
from tfx_serving_ext.publish.volume import list_versions

CLI = [sys.executable, "-m", "tfx_serving_ext.cli"]
DEMO = [sys.executable, "-m", "pipelines.penguin.demo"]  # run from the repository root
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """Runs `make demo`'s command once for this module on a 100-column pseudo-terminal.

    Returns the work directory and the lines the terminal showed (escape sequences removed).
    """
    workdir = tmp_path_factory.mktemp("demo")
    code, raw = run_in_terminal([*DEMO, "--workdir", str(workdir)], cwd=REPO_ROOT, timeout=600)
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines[-60:])
    return workdir, lines


def _accuracy(signature_output: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(signature_output, axis=1) == labels))


@pytest.mark.slow
def test_demo_hot_swaps_from_version_1_to_2_without_a_failed_request(demo_run):
    workdir, lines = demo_run
    versions = list_versions(workdir / "serving" / "penguin")
    assert sorted(versions) == [1, 2]
    assert (versions[2] / "saved_model.pb").is_file()
    assert (versions[2] / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert f"Pushed model: {versions[2]}" in lines
    assert any("the server serves 2" in line for line in lines)
    swap = next(line for line in lines if line.startswith("Requests during the hot swap 1 -> 2"))
    assert " 0 failed" in swap and "version 1:" in swap and "version 2:" in swap
    report = next(line for line in lines if line.startswith("Canary report"))
    assert Path(report.split(": ", 1)[1]).is_file()


@pytest.mark.slow
def test_demo_on_a_terminal_shows_steps_and_a_table_and_no_log_lines(demo_run):
    workdir, lines = demo_run
    assert log_lines(lines) == [], "log lines reached the screen without -v"
    done = [line for line in lines if line.startswith("✓ ")]
    assert [line.split(" · ")[0] for line in done] == [
        "✓ Pipeline run 1: train, validate, warm up, canary, push",
        "✓ Embedded TF Serving on the serving volume",
        "✓ Pipeline run 2: a retrained model, under live traffic",
        "✓ Hot swap under traffic",
    ]

    # The closing table: each component's verdict in both runs, with its duration.
    header = lines.index(next(line for line in lines if line.startswith("component ")))
    assert lines[header].split() == ["component", "run", "1", "time", "run", "2", "time"]
    rows = {line.split()[0]: line for line in lines[header + 1 : header + 8]}
    assert rows["SignatureValidator"].count("BLESSED") == 2
    assert rows["ServingCanary"].count("INFRA_BLESSED") == 2
    assert "pushed version 1" in rows["ServingPusher"]
    assert "pushed version 2, available" in rows["ServingPusher"]
    assert rows["PenguinTrainer"].rstrip().endswith(" s")

    log = next(line for line in lines if line.startswith("Log: "))
    log_path = Path(log.split(": ", 1)[1])
    assert log_path == workdir / "demo.log"
    # What the screen was spared went to the log: TFX's absl lines, the server's.
    logged = log_path.read_text()
    assert "Component ServingPusher is running." in logged
    assert "tfx_serving_ext.server" in logged


@pytest.mark.slow
def test_trainer_component_exports_both_signatures_that_classify_penguins(
    demo_run, penguin_examples
):
    import tensorflow as tf

    workdir, _ = demo_run
    # The demo trains twice (seeds 0 and 1); check the first model.
    trainer_models = workdir / "pipeline_root" / "PenguinTrainer" / "model"
    model_uris = sorted(trainer_models.iterdir(), key=lambda p: int(p.name))
    serving_dir = find_serving_model_dir(model_uris[0])
    assert serving_dir.name == "Format-Serving"

    signatures = read_signature_defs(serving_dir)
    assert set(signatures) == {"serving_default", penguin_model.FEATURES_SIGNATURE}
    examples_input = signatures["serving_default"].inputs["examples"]
    assert examples_input.dtype == tf.string.as_datatype_enum
    assert [d.size for d in examples_input.tensor_shape.dim] == [-1]
    assert set(signatures[penguin_model.FEATURES_SIGNATURE].inputs) == set(
        penguin_model.FEATURE_KEYS
    )

    # Every 7th penguin: all three species, rows the trainer saw and rows it did not.
    sample = penguin_examples[::7]
    labels = np.array([e.features.feature["species"].int64_list.value[0] for e in sample])
    assert set(labels) == {0, 1, 2}
    loaded = tf.saved_model.load(str(serving_dir))
    from_examples = loaded.signatures["serving_default"](
        examples=tf.constant([e.SerializeToString() for e in sample])
    )["probabilities"].numpy()
    features = {
        key: tf.constant([e.features.feature[key].float_list.value[0] for e in sample])
        for key in penguin_model.FEATURE_KEYS
    }
    from_features = loaded.signatures[penguin_model.FEATURES_SIGNATURE](**features)[
        "probabilities"
    ].numpy()

    assert from_examples.shape == (len(sample), 3)
    np.testing.assert_allclose(from_examples.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(from_examples, from_features, rtol=1e-5, atol=1e-6)
    assert _accuracy(from_examples, labels) >= 0.9


def test_shared_penguin_fixture_model_is_a_good_classifier(penguin_model_dir, penguin_examples):
    import tensorflow as tf

    labels = np.array([e.features.feature["species"].int64_list.value[0] for e in penguin_examples])
    loaded = tf.saved_model.load(str(penguin_model_dir))
    probabilities = loaded.signatures["serving_default"](
        examples=tf.constant([e.SerializeToString() for e in penguin_examples])
    )["probabilities"].numpy()
    assert _accuracy(probabilities, labels) >= 0.9


def test_cli_version_and_demo_help():
    from tfx_serving_ext import __version__

    version = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"tfx-serving-ext {__version__}"
    assert __version__ != "0.0.0+unknown"
    demo_help = subprocess.run(
        [*DEMO, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert "--workdir" in demo_help.stdout


def test_missing_examples_split_is_a_clear_error(tmp_path):
    from pipelines.penguin.trainer import read_split

    with pytest.raises(FileNotFoundError, match="Split-train"):
        read_split(str(tmp_path), "train")


@pytest.mark.slow
def test_demo_piped_prints_plain_lines_a_table_and_no_log_lines(tmp_path):
    """`make demo | tee demo.txt`, as in a CI log: no control characters, one line per step."""
    completed = subprocess.run(
        [*DEMO, "--workdir", str(tmp_path / "demo")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", output), "control characters when piped"
    lines = output.splitlines()
    assert log_lines(lines) == [], "log lines reached the output without -v"
    steps = [line for line in lines if line.startswith(("Pipeline run", "Embedded TF", "Hot swap"))]
    assert [line.split(":")[0] for line in steps] == [
        "Pipeline run 1",
        "Embedded TF Serving on the serving volume",
        "Pipeline run 2",
        "Hot swap under traffic",
    ]
    assert all(re.search(r"\(\d+(\.\d+)? s\)$", line) for line in steps), steps
    assert any(line.split()[:1] == ["ServingPusher"] for line in lines), "no closing table"
    assert any(line.startswith("Requests during the hot swap 1 -> 2") for line in lines)
