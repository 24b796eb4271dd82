"""Returns what the post-push watch will look at, decided before anything is published.

The watch sees the new version through two inputs: requests it replays at both versions (a
`watch_requests_file`, else the versions' warmup files) and each replica's request metrics
(Prometheus, on the REST port: `metrics_port` for a gRPC fleet). A watch with neither can only
end inconclusive, and the stable label would still move to an unwatched version; such a push is
refused while the volume is still as it was.

Usage:
    replay, before = watch_inputs(fleet, config, previous=7, model_dir=model_dir)
    ...  # publish, verify, then watch_new_version(..., replay=replay, metrics_before=before)
"""

from __future__ import annotations

from pathlib import Path

from tfx_serving_ext.checks.requests import RequestForSignature
from tfx_serving_ext.checks.warmup import WARMUP_DIR, WARMUP_FILE
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish.fleet import Fleet
from tfx_serving_ext.publish.push_config import PushConfigError, VolumePushConfig
from tfx_serving_ext.publish.watch import metrics_baseline
from tfx_serving_ext.publish.watch_metrics import MetricsSnapshot
from tfx_serving_ext.publish.watch_traffic import load_replay_requests

# Where a SavedModel keeps the requests TF Serving warms it up with.
WARMUP_PATH = f"{WARMUP_DIR}/{WARMUP_FILE}"


def watch_inputs(
    fleet: Fleet, config: VolumePushConfig, previous: int | None, model_dir: Path
) -> tuple[list[RequestForSignature], dict[str, MetricsSnapshot | str]]:
    """Returns the watch's replayed requests and each replica's metrics before the swap.

    Both are empty when the push is not watched.

    Raises:
        PushConfigError: `watch_requests_file` cannot be read, or the watch would have nothing
            to look at (no request to replay and no replica's metrics); nothing is published.
    """
    if not config.watch_seconds:
        return [], {}
    replay = replay_requests(config, previous, model_dir)
    before = metrics_baseline(fleet, config.model_name)
    if not replay and not any(isinstance(b, MetricsSnapshot) for b in before.values()):
        raise PushConfigError(blind_watch_message(config, before))
    return replay, before


def replay_requests(
    config: VolumePushConfig, previous: int | None, model_dir: Path
) -> list[RequestForSignature]:
    """Returns the watch's replayed requests (none when `watch_replay` is off).

    Raises:
        PushConfigError: `watch_requests_file` is missing or not a file of PredictionLogs.
    """
    if not config.watch_replay:
        return []
    from tfx_serving_ext.checks.warmup import WarmupFileError

    on_disk = list_versions(config.base_directory)
    dirs = [on_disk[previous]] if previous in on_disk else []
    try:
        return load_replay_requests(config.watch_requests_file, [*dirs, model_dir])
    except (FileNotFoundError, WarmupFileError) as exc:
        message = f"nothing published: the watch cannot replay requests: {exc}"
        raise PushConfigError(message) from exc


def blind_watch_message(config: VolumePushConfig, before: dict[str, MetricsSnapshot | str]) -> str:
    """Returns why the watch would see nothing and which options give it something to see."""
    if not config.watch_replay:
        no_replay = "watch_replay is off"
    elif config.watch_requests_file:
        no_replay = f"{config.watch_requests_file} holds no Predict, Classify or Regress request"
    else:
        no_replay = f"no watch_requests_file, and neither version has a warmup file ({WARMUP_PATH})"
    no_metrics = "; ".join(f"{address}: {why}" for address, why in before.items())
    return (
        f"nothing published: a watch of {config.watch_seconds:g}s would see nothing (it would "
        "end inconclusive and the push would count, the stable label moved): no requests to "
        f"replay ({no_replay}) and no replica's request metrics ({no_metrics}). Give it one: "
        "metrics_port "
        "(push --metrics-port), the replicas' REST port with TF Serving's Prometheus metrics "
        "enabled (--monitoring_config_file); or watch_requests_file (push --watch-requests), a "
        f"TFRecord of PredictionLogs; or a warmup file in the model ({WARMUP_PATH}); or push "
        "without a watch (watch_seconds 0, no --watch)"
    )
