"""Returns replayed requests for the post-push watch, and sends them at one version explicitly.

The watch drives a little traffic of its own at the new version and at the previous one on every
replica, each request addressed to its version (`model_spec.version`), so the two can be told
apart although TF Serving's metrics carry no version. The requests are PredictionLogs: a file
given for the purpose, or else the warmup requests (`assets.extra/tf_serving_warmup_requests`)
of the new and of the previous version, the previous one's first: those are what the serving
version was proven on.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from tensorflow_serving.apis import prediction_log_pb2

from tfx_serving_ext.checks.requests import RequestForSignature, from_prediction_log
from tfx_serving_ext.checks.warmup import read_warmup_file, warmup_file_path
from tfx_serving_ext.publish.watch_figures import SideFigures

logger = logging.getLogger(__name__)

MAX_REPLAY_REQUESTS = 100

_SEND = {"predict": "raw_predict", "classify": "raw_classify", "regress": "raw_regress"}


def load_replay_requests(
    requests_file: str | os.PathLike | None,
    version_dirs: list[Path],
) -> list[RequestForSignature]:
    """Returns up to MAX_REPLAY_REQUESTS requests to replay at both versions.

    From `requests_file` when given, else from the warmup file of each of `version_dirs` in
    order (missing files are skipped). MultiInference records are left out: they hold several
    requests for one answer.

    Raises:
        WarmupFileError: `requests_file` (or a warmup file) is corrupt.
        FileNotFoundError: `requests_file` is given but does not exist.
    """
    if requests_file:
        if not Path(requests_file).is_file():
            raise FileNotFoundError(f"watch_requests_file {requests_file} does not exist")
        sources = [Path(requests_file)]
    else:
        sources = [warmup_file_path(d) for d in version_dirs if warmup_file_path(d).is_file()]
    requests: list[RequestForSignature] = []
    for source in sources:
        logs: list[prediction_log_pb2.PredictionLog] = read_warmup_file(source)
        for log in logs:
            if log.WhichOneof("log_type") in ("predict_log", "classify_log", "regress_log"):
                requests.append(from_prediction_log(log))
    if len(requests) > MAX_REPLAY_REQUESTS:
        requests = requests[:MAX_REPLAY_REQUESTS]
    logger.info("Watch replays %d requests from %s", len(requests), [str(s) for s in sources])
    return requests


def send_at_version(
    client: Any,
    request: RequestForSignature,
    model_name: str,
    version: int,
    figures: SideFigures,
    *,
    unserved_is_error: bool = True,
) -> bool:
    """Sends one request to `version` of the model and records its latency and outcome.

    Returns False, recording nothing, when the version is not served (NOT_FOUND) and
    `unserved_is_error` is off: a previous version the server's version policy unloaded
    (`latest { num_versions: 1 }`) has no figures to compare with, not failing ones.
    """
    from tfx_serving_ext.protocol.errors import ServingError

    copy = type(request.request)()
    copy.CopyFrom(request.request)
    copy.model_spec.name = model_name
    copy.model_spec.ClearField("version_label")
    copy.model_spec.version.value = version
    start = time.perf_counter()
    try:
        getattr(client, _SEND[request.kind])(copy)
    except ServingError as exc:
        if exc.code == "NOT_FOUND" and not unserved_is_error:
            return False
        figures.record(time.perf_counter() - start, f"{exc.code}: {exc.message}")
    else:
        figures.record(time.perf_counter() - start)
    return True
