"""The penguin classifier: its features, its Keras model, and its serving export.

The export carries the signatures TF Serving clients of this model use:
- `serving_default`: serialized `tf.Example` strings in (input `examples`, shape [-1]), class
  probabilities out (output `probabilities`, shape [-1, 3]) — the signature TFX's own examples
  export and the one InfraValidator's request builder drives;
- `predict_features`: the four measurements as named float inputs (shape [-1] each), for REST
  `{"instances": [{"culmen_length_mm": 39.1, ...}]}` requests; same output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FEATURE_KEYS = ("culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g")
LABEL_KEY = "species"
CLASS_NAMES = ("Adelie", "Chinstrap", "Gentoo")
OUTPUT_KEY = "probabilities"
FEATURES_SIGNATURE = "predict_features"


def build_model(train_features: np.ndarray, seed: int = 0):
    """Returns an uncompiled-free, compiled Keras classifier normalised on `train_features`."""
    import keras

    keras.utils.set_random_seed(seed)
    normalization = keras.layers.Normalization(axis=-1)
    normalization.adapt(train_features)
    model = keras.Sequential(
        [
            keras.Input(shape=(len(FEATURE_KEYS),), name="features"),
            normalization,
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def train_model(
    train: tuple[np.ndarray, np.ndarray],
    eval_: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    epochs: int = 40,
    seed: int = 0,
):
    """Returns (model, eval accuracy or None) after training on (features, labels) arrays."""
    features, labels = train
    model = build_model(features, seed=seed)
    model.fit(features, labels, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    accuracy = None
    if eval_ is not None and len(eval_[0]):
        _, accuracy = model.evaluate(eval_[0], eval_[1], verbose=0)
        logger.info("Penguin model: eval accuracy %.3f on %d examples", accuracy, len(eval_[0]))
    return model, accuracy


def export_serving_model(
    model, export_dir: str | os.PathLike, *, drop_features: Sequence[str] = ()
) -> Path:
    """Writes `model` as a SavedModel with the serving signatures; returns `export_dir`.

    Args:
        model: the trained Keras classifier.
        export_dir: where the SavedModel is written.
        drop_features: feature names left out of the `predict_features` signature's inputs
            (fed as their training mean instead). A retrain that stops taking a feature breaks
            the contract with clients; the reliability tests use it to make such a model.

    Raises:
        ValueError: a name in `drop_features` is not one of FEATURE_KEYS, or it names all.
    """
    import keras
    import tensorflow as tf

    unknown = sorted(set(drop_features) - set(FEATURE_KEYS))
    if unknown:
        raise ValueError(f"drop_features {unknown} are not penguin features; use {FEATURE_KEYS}")
    if set(drop_features) >= set(FEATURE_KEYS):
        raise ValueError("drop_features leaves predict_features without inputs; keep one")

    feature_spec = {key: tf.io.FixedLenFeature([], tf.float32) for key in FEATURE_KEYS}

    def probabilities_of(columns):
        stacked = tf.stack([tf.cast(columns[key], tf.float32) for key in FEATURE_KEYS], axis=1)
        return {OUTPUT_KEY: model(stacked, training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return probabilities_of(tf.io.parse_example(examples, feature_spec))

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.float32, name=key) for key in FEATURE_KEYS]
    )
    def serve_features(culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g):
        return probabilities_of(
            {
                "culmen_length_mm": culmen_length_mm,
                "culmen_depth_mm": culmen_depth_mm,
                "flipper_length_mm": flipper_length_mm,
                "body_mass_g": body_mass_g,
            }
        )

    if drop_features:
        serve_features = _features_endpoint_without(model, drop_features, probabilities_of)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve_examples)
    archive.add_endpoint(FEATURES_SIGNATURE, serve_features)
    export_dir = Path(export_dir)
    archive.write_out(str(export_dir), verbose=False)
    return export_dir


def _features_endpoint_without(model, drop_features: Sequence[str], probabilities_of):
    """Returns a `predict_features` function whose inputs leave out `drop_features`."""
    import keras
    import tensorflow as tf

    normalization = next(
        layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)
    )
    means = np.asarray(normalization.adapt_mean, np.float32).reshape(-1)
    kept = [key for key in FEATURE_KEYS if key not in drop_features]

    @tf.function(
        input_signature=[{key: tf.TensorSpec([None], tf.float32, name=key) for key in kept}]
    )
    def serve_features(features):
        batch = tf.shape(features[kept[0]])[0]
        columns = {
            key: features[key] if key in features else tf.fill([batch], means[index])
            for index, key in enumerate(FEATURE_KEYS)
        }
        return probabilities_of(columns)

    return serve_features


def read_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Returns (features [n, 4] float32, labels [n] int64) read from a penguins CSV file."""
    table = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    features = np.stack([table[key].astype(np.float32) for key in FEATURE_KEYS], axis=1)
    return features, table[LABEL_KEY].astype(np.int64)
