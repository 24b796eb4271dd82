"""Replays `assets.extra/tf_serving_warmup_requests` against a version before it serves."""

from __future__ import annotations

import logging

from tfx_serving_ext.checks.warmup import (
    read_warmup_file,
    replay_prediction_logs,
    warmup_file_path,
)
from tfx_serving_ext.server.servable import Servable

logger = logging.getLogger(__name__)


def run_warmup(servable: Servable, num_iterations: int = 1) -> int:
    """Returns how many warmup requests were replayed against `servable` (0 without a file).

    Raises:
        ServingError: the file is corrupt or too long, holds an unsupported log type, or
            a request fails; TF Serving then keeps the version out of service.
    """
    path = warmup_file_path(servable.path)
    if not path.is_file():
        return 0
    logs = read_warmup_file(path)
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
