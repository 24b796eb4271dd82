"""A small trainer component that writes the same `Model` artifact as `tfx.components.Trainer`.

`tfx.components.Trainer` does not import on machines without tensorflow-data-validation, so the
example pipeline trains with this Python-function component instead. Its output is laid out like
the Trainer's (`<model.uri>/Format-Serving/saved_model.pb`), so every component downstream works
unchanged when a user wires in the real Trainer.
"""

# No `from __future__ import annotations`: the @component decorator reads real annotations.

import logging
import os
from pathlib import Path

import numpy as np
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, Model

from pipelines.penguin import model as penguin_model
from tfx_serving_ext.components.artifact_paths import local_path
from tfx_serving_ext.protocol.saved_model import TRAINER_SERVING_SUBDIR

logger = logging.getLogger(__name__)


def read_split(examples_uri: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns (features, labels) of one split of an Examples artifact (gzip TFRecords).

    `examples_uri` may be an object-store URI (gs://, s3://, minio://): it is read through its
    KFP mount, as every executor of the package reads artifacts (`artifact_paths.local_path`).
    """
    import tensorflow as tf

    split_dir = Path(local_path(examples_uri)) / f"Split-{split}"
    files = sorted(str(p) for p in split_dir.glob("*.gz"))
    if not files:
        raise FileNotFoundError(
            f"No TFRecord files in {split_dir}: is {examples_uri} an Examples artifact with a "
            f"'{split}' split (as CsvExampleGen writes)?"
        )
    spec = {key: tf.io.FixedLenFeature([], tf.float32) for key in penguin_model.FEATURE_KEYS}
    spec[penguin_model.LABEL_KEY] = tf.io.FixedLenFeature([], tf.int64)
    features, labels = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        parsed = tf.io.parse_single_example(record, spec)
        features.append([float(parsed[key]) for key in penguin_model.FEATURE_KEYS])
        labels.append(int(parsed[penguin_model.LABEL_KEY]))
    return np.asarray(features, np.float32), np.asarray(labels, np.int64)


def train_and_export(
    examples_uri: str,
    model_uri: str,
    *,
    epochs: int = 40,
    seed: int = 0,
    drop_features: tuple[str, ...] = (),
) -> tuple[Path, float | None]:
    """Trains on the train split, evaluates on eval; returns (serving dir, eval accuracy).

    `drop_features` are left out of the `predict_features` signature (see
    `model.export_serving_model`): a retrain that breaks the serving contract, for tests.
    """
    train = read_split(examples_uri, "train")
    eval_ = read_split(examples_uri, "eval")
    logger.info(
        "Training the penguin classifier on %d examples (%d epochs, seed %d)",
        len(train[1]),
        epochs,
        seed,
    )
    trained, accuracy = penguin_model.train_model(train, eval_, epochs=epochs, seed=seed)
    serving_dir = Path(local_path(model_uri)) / TRAINER_SERVING_SUBDIR
    penguin_model.export_serving_model(trained, serving_dir, drop_features=drop_features)
    logger.info("Exported the serving model to %s", serving_dir)
    return serving_dir, accuracy


@component
def PenguinTrainer(  # noqa: N802 - TFX component names are classes by convention
    examples: InputArtifact[Examples],
    model: OutputArtifact[Model],
    epochs: Parameter[int] = 40,
    seed: Parameter[int] = 0,
    drop_features: Parameter[str] = "",
) -> None:
    """Trains the penguin classifier and exports it in the TFX Trainer's `Format-Serving` layout.

    `drop_features` (comma-separated feature names, default none) leaves those inputs out of the
    `predict_features` signature: a contract-breaking retrain, used by the reliability tests.
    """
    dropped = tuple(name.strip() for name in drop_features.split(",") if name.strip())
    _, accuracy = train_and_export(
        examples.uri, model.uri, epochs=epochs, seed=seed, drop_features=dropped
    )
    if accuracy is not None:
        model.set_float_custom_property("eval_accuracy", float(accuracy))
    os.sync()
