"""TFX's own test-data models and examples, as the installed tfx ships them, for the tests.

The layouts are the ones the stock Trainer and Pusher write: the Keras Trainer's
`Format-Serving/` (`trainer/keras`, a penguin model), the Estimator Trainer's
`Format-Serving/export/chicago-taxi/<timestamp>/` (`trainer/current`, `trainer/previous`) and a
pushed copy `<dir>/<version>/` (`pusher/model_push`, whose graph uses `BoostedTreesBucketize`, an
op without a kernel in today's TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

TESTDATA = Path(__import__("tfx").__file__).parent / "components" / "testdata"
KERAS = TESTDATA / "trainer" / "keras"
ESTIMATOR = TESTDATA / "trainer" / "current"
ESTIMATOR_PREVIOUS = TESTDATA / "trainer" / "previous"
PUSHED = TESTDATA / "pusher" / "model_push"
PENGUIN_EXAMPLES = TESTDATA / "penguin" / "data"
TAXI_EXAMPLES = TESTDATA / "csv_example_gen"
KERNEL_LESS_OP = "BoostedTreesBucketize"


def artifact(kind, uri: Path, **properties):
    """Returns a `kind` artifact (e.g. standard_artifacts.Model) at `uri` with `properties` set."""
    instance = kind()
    instance.uri = str(uri)
    for key, value in properties.items():
        setattr(instance, key, value)
    return instance


def read_examples(examples_root: Path, count: int = 8) -> list[bytes]:
    """Returns the first `count` serialized tf.Examples of an ExampleGen output's eval split."""
    import tensorflow as tf

    files = sorted(str(p) for p in (examples_root / "Split-eval").glob("*.gz"))[:1]
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    return [record.numpy() for record in dataset]
