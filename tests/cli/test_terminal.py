"""What the long-running commands show on a terminal and in a pipe: steps, not logs."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.terminal_capture import log_lines, run_in_terminal, screen_lines
from tfx_serving_ext.commands._terminal import Terminal

CLI = [sys.executable, "-m", "tfx_serving_ext.cli"]
REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but \t and \n


def test_piped_steps_are_one_plain_line_each_and_logs_stay_in_the_file(tmp_path, monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    log_path = tmp_path / "run" / "step.log"
    with Terminal(log_path, announce_log=True) as terminal:
        with terminal.step("Copying") as step:
            logging.getLogger("absl").warning("ArtifactQuery.property_predicate is not supported.")
            logging.getLogger("tfx_serving_ext.server.manager").info("Loading servable version")
            step.update("3 of 10 MB")
            step.done("version 3")
        with pytest.raises(RuntimeError), terminal.step("Verifying") as step:
            logging.getLogger("tfx_serving_ext.publish").error("version 3 ended in END")
            raise RuntimeError("the server never reported version 3 AVAILABLE")

    lines = screen.getvalue().splitlines()
    assert not CONTROL_CHARACTERS.search(screen.getvalue())
    assert re.fullmatch(r"Copying: version 3 \(\d\.\d s\)", lines[0])
    assert re.fullmatch(
        r"Verifying: FAILED after \d\.\d s: RuntimeError: the server never reported version 3 "
        r"AVAILABLE",
        lines[1],
    )
    # A failing step shows its own part of the log, and only that.
    assert lines[2] == f"last lines of the log ({log_path}):"
    assert lines[3].endswith("ERROR tfx_serving_ext.publish: version 3 ended in END")
    assert lines[4:] == [f"log: {log_path}"]
    logged = log_path.read_text()
    assert "WARNING absl: ArtifactQuery.property_predicate is not supported." in logged
    assert "INFO tfx_serving_ext.server.manager: Loading servable version" in logged
    # The logging set-up is put back.
    root_files = [getattr(h, "baseFilename", "") for h in logging.getLogger().handlers]
    assert str(log_path) not in root_files


def test_a_step_failed_without_an_exception_says_so_in_one_line(tmp_path, monkeypatch):
    """Step.fail: the command explains the failure itself, so no exception name, no log tail."""
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    log_path = tmp_path / "step.log"
    with Terminal(log_path) as terminal:
        with terminal.step("Publishing a new version on /v") as step:
            logging.getLogger("tfx_serving_ext.publish").error("No space left on device")
            step.fail("I/O error")
        terminal.print("error: I/O error: no space left on the device")
    assert re.fullmatch(
        r"Publishing a new version on /v: FAILED after \d\.\d s: I/O error\n"
        r"error: I/O error: no space left on the device\n",
        screen.getvalue(),
    )
    assert "No space left on device" in log_path.read_text()


def _canary_args(penguin_model_dir, penguin_csv, output) -> list[str]:
    return [
        *CLI,
        "canary",
        str(penguin_model_dir),
        "--baseline",
        str(penguin_model_dir),
        "--examples",
        str(penguin_csv),
        "--num-examples",
        "20",
        "--requests",
        "20",
        "--output",
        str(output),
    ]


@pytest.mark.slow
def test_canary_piped_prints_one_plain_line_per_step(tmp_path, penguin_model_dir, penguin_csv):
    completed = subprocess.run(
        _canary_args(penguin_model_dir, penguin_csv, tmp_path / "report"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.startswith("BLESSED")
    assert not CONTROL_CHARACTERS.search(completed.stderr + completed.stdout)
    log_path = tmp_path / "report" / "canary.log"
    assert completed.stderr.splitlines() == [
        completed.stderr.splitlines()[0],
        f"log: {log_path}",
    ]
    assert re.fullmatch(
        r"Canary: serving the candidate against \S+: BLESSED \([\d.]+ s\)",
        completed.stderr.splitlines()[0],
    )
    # TensorFlow's C++ start-up lines and the server's went to the log instead.
    assert "Loading servable version" in log_path.read_text()


@pytest.mark.slow
def test_canary_on_a_terminal_shows_no_log_lines(tmp_path, penguin_model_dir, penguin_csv):
    code, raw = run_in_terminal(
        _canary_args(penguin_model_dir, penguin_csv, tmp_path / "report"),
        cwd=REPO_ROOT,
        timeout=600,
    )
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines)
    assert log_lines(lines) == []
    assert any(line.startswith("✓ Canary: serving the candidate") for line in lines)
    assert lines[-1] == f"log: {tmp_path / 'report' / 'canary.log'}" or any(
        line.startswith("log: ") for line in lines
    )
