"""Tests that run in the TFX 1.16 / TensorFlow 2.16 / Python 3.10 environment (.ci/tfx116-env).

They need a complete TFX (`from tfx import v1`, the stock Trainer and Evaluator), which the main
environment cannot have (no tensorflow-data-validation wheel for TFX 1.21 on Python 3.11).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    try:
        from tfx import v1  # noqa: F401
    except ImportError as exc:
        skip = pytest.mark.skip(reason=f"needs a complete TFX (run .ci/tfx116-env test): {exc}")
        for item in items:
            item.add_marker(skip)
