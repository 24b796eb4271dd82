"""Fixtures shared by every test area: the penguin data and a penguin model trained once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The live container fixtures (a private dockerd, the TF Serving image, a registry in its network
# namespace) and the summary line naming container tests skipped for want of a package.
from tests.containers.fixtures import (  # noqa: F401
    docker_engine,
    netns_registry,
    pytest_terminal_summary,
    tf_serving_image,
)

# Keep TensorFlow's C++ start-up chatter out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def penguin_csv() -> Path:
    """The committed Palmer Penguins CSV (4 float features, integer `species`)."""
    from pipelines.penguin import PENGUIN_CSV

    return PENGUIN_CSV


@pytest.fixture(scope="session")
def penguin_model_dir(tmp_path_factory) -> Path:
    """A trained penguin SavedModel directory (trained once per test session; do not modify)."""
    from tests.support.penguin import train_penguin_model

    return train_penguin_model(tmp_path_factory.mktemp("penguin_model") / "saved_model", seed=0)


@pytest.fixture(scope="session")
def penguin_examples(penguin_csv) -> list:
    """Every penguin as a `tf.train.Example` with its features and `species` label."""
    from tests.support.penguin import penguin_examples

    return penguin_examples(penguin_csv)
