"""The penguin pipeline as TFX's template writes it (`from tfx import v1 as tfx`, stock Trainer
and Evaluator), with this package's components between the Evaluator and the serving volume."""
