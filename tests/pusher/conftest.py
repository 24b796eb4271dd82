"""Fixtures for the pusher tests: small real SavedModels and a Model artifact layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def save_affine_model(export_dir: Path, slope: float, intercept: float) -> Path:
    """Returns `export_dir` holding a SavedModel computing y = slope * x + intercept.

    `serving_default` takes float `x` of shape [-1] and returns `y`.
    """
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            super().__init__()
            self.slope = tf.Variable(slope, dtype=tf.float32)
            self.intercept = tf.Variable(intercept, dtype=tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": self.slope * x + self.intercept}

    module = Affine()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir


@pytest.fixture(scope="session")
def half_plus_two_dir(tmp_path_factory) -> Path:
    """A SavedModel with y = 0.5 x + 2 (do not modify)."""
    return save_affine_model(tmp_path_factory.mktemp("models") / "half_plus_two", 0.5, 2.0)


@pytest.fixture(scope="session")
def half_plus_three_dir(tmp_path_factory) -> Path:
    """A SavedModel with y = 0.5 x + 3, to tell versions apart by their answers."""
    return save_affine_model(tmp_path_factory.mktemp("models") / "half_plus_three", 0.5, 3.0)


@pytest.fixture(scope="session")
def unloadable_model_dir(tmp_path_factory, half_plus_two_dir) -> Path:
    """A directory that looks like a SavedModel but whose saved_model.pb does not parse."""
    path = tmp_path_factory.mktemp("models") / "unloadable"
    shutil.copytree(half_plus_two_dir, path)
    (path / "saved_model.pb").write_bytes(b"\x08\xff\xff this is not a SavedModel proto")
    return path


def model_artifact(uri: Path, saved_model_dir: Path):
    """Returns a standard Model artifact at `uri` in the TFX Trainer layout (Format-Serving/)."""
    from tfx.types import standard_artifacts

    shutil.copytree(saved_model_dir, uri / "Format-Serving")
    artifact = standard_artifacts.Model()
    artifact.uri = str(uri)
    return artifact
