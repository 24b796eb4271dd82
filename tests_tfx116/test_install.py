"""Installing the package beside a user's TFX 1.16 leaves their TFX stack as it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNTOUCHED = ("tfx", "tensorflow", "apache-beam")


@pytest.fixture(scope="module")
def base_env() -> Path:
    """The environment .ci/tfx116-env built with only `tfx==1.16.0` (and dill) in it."""
    env_dir = os.environ.get("TFX116_ENV_DIR")
    if not env_dir:
        pytest.skip("run through .ci/tfx116-env, which builds the plain TFX 1.16 environment")
    return Path(env_dir) / "base"


def installed_versions(python: Path) -> dict[str, str]:
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {row["name"].lower(): row["version"] for row in json.loads(listing.stdout)}


def test_pip_install_keeps_tfx_tensorflow_and_beam(base_env, tmp_path):
    """What `pip install tfx-serving-ext` would do in a fresh TFX 1.16 env: pip's own plan."""
    python = base_env / "bin" / "python"
    before = installed_versions(python)
    assert before["tfx"] == "1.16.0"
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = wheel_dir.glob("tfx_serving_ext-*.whl")
    report = tmp_path / "report.json"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            str(report),
            str(wheel),
        ],
        check=True,
        cwd=tmp_path,
    )
    plan = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "tfx-serving-ext" in plan
    for name in UNTOUCHED:
        assert name not in plan, (
            f"installing the package would change {name} {before[name]} -> {plan[name]}"
        )
    changed = {name: (before[name], version) for name, version in plan.items() if name in before}
    assert "tensorflow-serving-api" not in changed and "ml-metadata" not in changed, changed
