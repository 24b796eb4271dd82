"""`RequestSpec.make_warmup`, as InfraValidator does it: the blessing carries the warmed model.

When the model is blessed, InfraValidator's executor copies the served SavedModel to
`path_utils.stamped_model_path(blessing.uri)` (`<blessing>/stamped_model`), writes the requests
it sent as `assets.extra/tf_serving_warmup_requests` (one PredictionLog per request) and sets
the blessing's `has_model` to 1. The stock Pusher, and ServingPusher, then push that copy
instead of the `model` input. The canary does the same with the requests it sent (at most
TF Serving's 1000 records, the same number per signature); a warmup file the model already had
is replaced, as InfraValidator replaces it.

Example:
    stamped = write_warmed_model(candidate_dir, blessing.uri, result.requests)
    blessing.set_int_custom_property("has_model", 1)
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from tfx.utils import path_utils

from tfx_serving_ext.checks.requests import RequestForSignature
from tfx_serving_ext.checks.warmup import cap_records, warmup_file_path, write_warmup_file

logger = logging.getLogger(__name__)


class WarmedModelError(RuntimeError):
    """The warmed model could not be written into the blessing."""


def write_warmed_model(
    model_dir: str | Path, blessing_dir: str | Path, requests: Sequence[RequestForSignature]
) -> Path:
    """Returns the stamped model directory written into `blessing_dir` with a warmup file.

    Args:
        model_dir: the SavedModel directory the canary served (not the artifact's root).
        blessing_dir: the InfraBlessing's local directory.
        requests: the requests the canary sent; each becomes one warmup record.

    Raises:
        WarmedModelError: no request to write (a load-only canary warms nothing up).
    """
    if not requests:
        raise WarmedModelError(
            "RequestSpec.make_warmup needs requests, but the canary sent none (no examples, or "
            "none fit the signatures): give the canary `examples`"
        )
    target = Path(path_utils.stamped_model_path(str(blessing_dir)))
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(model_dir, target)
    if warmup_file_path(target).exists():
        logger.warning("Replacing the model's warmup file with the canary's requests (make_warmup)")
    write_warmup_file(target, cap_records(list(requests)))
    logger.info("Wrote the warmed model the blessing carries: %s", target)
    return target
