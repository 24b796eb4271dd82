"""Toy SavedModels for the validator tests: a baseline and one variant per breaking change."""

from __future__ import annotations

from pathlib import Path

import pytest

VARIANTS = {
    "baseline": {},
    "retrain": {"scale": 0.7},
    "removed_input": {"with_w": False},
    "dtype_changed": {"x_dtype": "float64"},
    "no_serving_default": {"default_name": "predict"},
    "static_batch": {"batch": 8},
    "fails_at_run_time": {"fail_at_run_time": True},
}


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory) -> dict[str, Path]:
    """SavedModel dirs by variant name, plus the TF1 `half_plus_two` and `float_classify`."""
    from tfx_serving_ext.testing.toy_models import save_half_plus_two_tf1, save_toy_model

    root = tmp_path_factory.mktemp("toy_models")
    models = {name: save_toy_model(root / name, **kw) for name, kw in VARIANTS.items()}
    models["half_plus_two"] = save_half_plus_two_tf1(root / "half_plus_two")
    models["float_classify"] = save_half_plus_two_tf1(
        root / "float_classify", float_classify_input=True
    )
    return models


@pytest.fixture(scope="session")
def toy_examples() -> list[bytes]:
    from tfx_serving_ext.testing.toy_models import make_examples

    return make_examples([1.0, 2.0, 3.0, 4.0])
