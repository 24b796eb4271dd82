"""Replays `assets.extra/tf_serving_warmup_requests` against a version before it serves."""

from __future__ import annotations

import logging
from pathlib import Path

from tensorflow_serving.apis import prediction_log_pb2

from tfx_serving_ext.checks.warmup import (
    MAX_WARMUP_RECORDS,
    WARMUP_DIR,
    WARMUP_FILE,
    replay_prediction_logs,
)
from tfx_serving_ext.protocol.errors import ServingError, invalid_argument
from tfx_serving_ext.server.servable import Servable

logger = logging.getLogger(__name__)


def warmup_file(version_dir: str | Path) -> Path:
    """Returns where TF Serving looks for the warmup file of a version directory."""
    return Path(version_dir) / WARMUP_DIR / WARMUP_FILE


def read_warmup_logs(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    """Returns the PredictionLogs in a warmup TFRecord file.

    Raises:
        ServingError: DATA_LOSS for a corrupt file or record, INVALID_ARGUMENT for more
            than 1000 records.
    """
    import tensorflow as tf

    logs = []
    try:
        for tensor in tf.data.TFRecordDataset(str(path)):
            record = tensor.numpy()
            if len(logs) >= MAX_WARMUP_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            log = prediction_log_pb2.PredictionLog()
            try:
                log.ParseFromString(record)
            except Exception as exc:
                raise ServingError(
                    "DATA_LOSS", f"Failed to parse PredictionLog record {len(logs)} of {path}"
                ) from exc
            logs.append(log)
    except tf.errors.OpError as exc:
        raise ServingError(
            "DATA_LOSS", f"Failed to read warmup records from {path}: {exc.message}"
        ) from exc
    return logs


def run_warmup(servable: Servable, num_iterations: int = 1) -> int:
    """Returns how many warmup requests were replayed against `servable` (0 without a file).

    Raises:
        ServingError: the file is corrupt or too long, holds an unsupported log type, or
            a request fails; TF Serving then keeps the version out of service.
    """
    path = warmup_file(servable.path)
    if not path.is_file():
        return 0
    logs = read_warmup_logs(path)
    for log in logs:
        if log.WhichOneof("log_type") == "multi_inference_log":
            for task in log.multi_inference_log.request.tasks:  # names in the file are ignored
                task.model_spec.name = servable.name
    count = replay_prediction_logs(servable, logs, iterations=num_iterations)
    logger.info(
        "Finished reading warmup data for model %s version %d: %d requests replayed",
        servable.name,
        servable.version,
        count,
    )
    return count
