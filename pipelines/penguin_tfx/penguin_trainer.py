"""The Trainer's module file: `run_fn` trains a small Keras classifier on the penguin CSV columns
and exports it with a `serving_default` signature over serialized `tf.Example`s, as TFX's penguin
template does (no Transform: the four measurements go in as they are).

Given to `tfx.components.Trainer(module_file=...)`; TFX loads it by path, so it imports nothing
from this repository.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

FEATURE_KEYS = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
LABEL_KEY = "species"
OUTPUT_KEY = "probabilities"
TRAIN_BATCH_SIZE = 20
EVAL_BATCH_SIZE = 10

FEATURE_SPEC = {
    **{key: tf.io.FixedLenFeature(shape=[1], dtype=tf.float32) for key in FEATURE_KEYS},
    LABEL_KEY: tf.io.FixedLenFeature(shape=[1], dtype=tf.int64),
}


def _schema() -> schema_pb2.Schema:
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_from_feature_spec(FEATURE_SPEC)


def _input_fn(
    file_pattern: list[str],
    data_accessor: tfx.components.DataAccessor,
    batch_size: int,
) -> tf.data.Dataset:
    """Returns (features, label) batches read from the Examples at `file_pattern`."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=LABEL_KEY),
        _schema(),
    ).repeat()


def _build_keras_model(learning_rate: float) -> tf.keras.Model:
    """Returns a compiled classifier: the four measurements in, three class probabilities out."""
    inputs = [tf.keras.layers.Input(shape=(1,), name=key) for key in FEATURE_KEYS]
    hidden = tf.keras.layers.concatenate(inputs)
    hidden = tf.keras.layers.BatchNormalization()(hidden)
    for _ in range(2):
        hidden = tf.keras.layers.Dense(8, activation="relu")(hidden)
    outputs = tf.keras.layers.Dense(3, activation="softmax")(hidden)
    model = tf.keras.Model(inputs=inputs, outputs=outputs)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()],
    )
    return model


def _serving_signatures(model: tf.keras.Model) -> dict[str, Any]:
    """Returns `serving_default`: serialized tf.Examples (input `examples`) -> probabilities."""
    feature_spec = {key: spec for key, spec in FEATURE_SPEC.items() if key != LABEL_KEY}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve_tf_examples_fn(serialized_examples):
        features = tf.io.parse_example(serialized_examples, feature_spec)
        return {OUTPUT_KEY: model([features[key] for key in FEATURE_KEYS])}

    return {"serving_default": serve_tf_examples_fn}


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """Trains the model and writes it to `fn_args.serving_model_dir` (TFX's Trainer entry point).

    `fn_args.custom_config` may set `epochs` (default 1), `seed` and `learning_rate`.
    """
    config = fn_args.custom_config or {}
    tf.keras.utils.set_random_seed(int(config.get("seed", 0)))
    train_dataset = _input_fn(fn_args.train_files, fn_args.data_accessor, TRAIN_BATCH_SIZE)
    eval_dataset = _input_fn(fn_args.eval_files, fn_args.data_accessor, EVAL_BATCH_SIZE)
    model = _build_keras_model(float(config.get("learning_rate", 0.01)))
    model.fit(
        train_dataset,
        steps_per_epoch=fn_args.train_steps,
        epochs=int(config.get("epochs", 1)),
        validation_data=eval_dataset,
        validation_steps=fn_args.eval_steps,
        verbose=0,
    )
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=_serving_signatures(model))
