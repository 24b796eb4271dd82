"""Trains the example penguin model outside a pipeline, for tests, benchmarks and the notebook."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.penguin import PENGUIN_CSV
from pipelines.penguin import model as penguin_model


def train_penguin_model(
    export_dir: str | os.PathLike,
    *,
    epochs: int = 40,
    seed: int = 0,
    csv_path: str | os.PathLike = PENGUIN_CSV,
) -> Path:
    """Returns `export_dir` after training the penguin classifier and exporting it there.

    Even rows train and odd rows evaluate, so the result is deterministic for a given seed.
    The SavedModel has the `serving_default` (serialized tf.Example) and `predict_features`
    (named float inputs) signatures described in `pipelines.penguin.model`.
    """
    features, labels = penguin_model.read_csv(csv_path)
    trained, _ = penguin_model.train_model(
        (features[::2], labels[::2]), (features[1::2], labels[1::2]), epochs=epochs, seed=seed
    )
    return penguin_model.export_serving_model(trained, export_dir)


def penguin_examples(csv_path: str | os.PathLike = PENGUIN_CSV) -> list:
    """Returns every penguin of the CSV file as a `tf.train.Example` (features and label)."""
    import tensorflow as tf

    features, labels = penguin_model.read_csv(csv_path)
    examples = []
    for row, label in zip(features, labels, strict=True):
        feature = {
            key: tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
            for key, value in zip(penguin_model.FEATURE_KEYS, row, strict=True)
        }
        feature[penguin_model.LABEL_KEY] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[int(label)])
        )
        examples.append(tf.train.Example(features=tf.train.Features(feature=feature)))
    return examples
