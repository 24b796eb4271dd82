"""Models and Examples artifacts for the warmup tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

NUM_SORTED_EXAMPLES = 400


def write_examples_split(root: Path, split: str, records: list[bytes]) -> None:
    """Writes `records` as ExampleGen does: gzip TFRecord under `<root>/Split-<split>/`."""
    import tensorflow as tf

    directory = root / f"Split-{split}"
    directory.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(directory / "data_tfrecord-00000-of-00001.gz"), options) as w:
        for record in records:
            w.write(record)


@pytest.fixture(scope="session")
def warmup_models(tmp_path_factory) -> dict[str, Path]:
    """Model artifact URIs in the TFX Trainer layout (`<uri>/Format-Serving/`), by name."""
    from tfx_serving_ext.testing.toy_models import save_half_plus_two_tf1, save_toy_model

    root = tmp_path_factory.mktemp("warmup_models")
    return {
        "half_plus_two": save_half_plus_two_tf1(root / "half_plus_two" / "Format-Serving").parent,
        "toy": save_toy_model(root / "toy" / "Format-Serving").parent,
        "fails": save_toy_model(root / "fails" / "Format-Serving", fail_at_run_time=True).parent,
    }


@pytest.fixture(scope="session")
def sorted_examples_uri(tmp_path_factory) -> Path:
    """An Examples artifact whose eval split is sorted by `index` (x = index), 400 examples.

    A writer that took "the first N" would only ever see small indices.
    """
    from tfx_serving_ext.testing.toy_models import make_examples

    root = tmp_path_factory.mktemp("sorted_examples")
    records = make_examples([float(i) for i in range(NUM_SORTED_EXAMPLES)])
    write_examples_split(root, "train", records[:10])
    write_examples_split(root, "eval", records)
    return root


@pytest.fixture
def fresh_output(tmp_path) -> Path:
    out = tmp_path / "warmed_model"
    yield out
    shutil.rmtree(out, ignore_errors=True)
