"""A test-only component that plants a failing warmup request in a (warmed) model.

TF Serving replays `assets.extra/tf_serving_warmup_requests` before a version becomes
AVAILABLE; one failing record keeps the whole version out of service. A model like that passes
signature validation (its signatures are fine) and must be caught by the serving canary. The
reliability tests put this component between WarmupRequestWriter and ServingCanary
(`create_pipeline(..., before_canary=plant_failing_warmup_step)`); it has no place in a real
pipeline.
"""

# No `from __future__ import annotations`: the @component decorator reads real annotations.

import logging
import shutil
from pathlib import Path

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Model

logger = logging.getLogger(__name__)

# An input name no penguin signature has: TF Serving fails the request with INVALID_ARGUMENT.
FAILING_INPUT = "no_such_input"


def plant_failing_warmup_request(model_dir: str | Path, signature_name: str = "") -> Path:
    """Returns the warmup file of `model_dir` after appending a request that cannot succeed.

    The request asks `signature_name` (default: the file's first record's signature, else
    `serving_default`) for an input it does not have. Existing records are kept.

    Raises:
        WarmupError: the existing warmup file is unreadable.
    """
    import numpy as np
    from tensorflow_serving.apis import prediction_log_pb2

    from tfx_serving_ext.checks.warmup import read_warmup_file, warmup_file_path, write_warmup_file
    from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto

    path = warmup_file_path(model_dir)
    logs = read_warmup_file(path) if path.is_file() else []
    if not signature_name:
        signature_name = (
            logs[0].predict_log.request.model_spec.signature_name if logs else "serving_default"
        )
    bad = prediction_log_pb2.PredictionLog()
    bad.predict_log.request.model_spec.signature_name = signature_name
    ndarray_to_tensor_proto(
        np.asarray([1.0], np.float32), bad.predict_log.request.inputs[FAILING_INPUT]
    )
    written = write_warmup_file(model_dir, [*logs, bad])
    logger.warning("Planted a failing warmup request (%s) in %s", signature_name, written)
    return written


@component
def PlantFailingWarmup(  # noqa: N802 - TFX component names are classes by convention
    model: InputArtifact[Model],
    tampered_model: OutputArtifact[Model],
) -> None:
    """Copies `model` and appends a warmup request that fails (test-only; see the module doc)."""
    from tfx_serving_ext.protocol.saved_model import TRAINER_SERVING_SUBDIR, find_serving_model_dir

    source = find_serving_model_dir(model.uri)
    target = Path(tampered_model.uri) / TRAINER_SERVING_SUBDIR
    shutil.copytree(source, target, dirs_exist_ok=True)
    plant_failing_warmup_request(target)


def plant_failing_warmup_step(warmed_model):
    """Returns ([PlantFailingWarmup], its tampered model): the pipeline's `before_canary` hook."""
    step = PlantFailingWarmup(model=warmed_model)
    return [step], step.outputs["tampered_model"]
