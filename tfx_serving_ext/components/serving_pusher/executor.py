"""ServingPusher executor: check blessings, resolve the model, push to the destination, record.

Each destination is one library function `push(model_dir, push_destination_json) -> PushOutcome`
registered in DESTINATIONS; adding a destination (e.g. Cloud Run) adds one entry there.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import path_utils

from tfx_serving_ext.components.artifact_paths import artifact_path
from tfx_serving_ext.protocol.saved_model import find_serving_model_dir, is_saved_model_dir

logger = logging.getLogger(__name__)

MODEL_KEY = standard_component_specs.MODEL_KEY
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY
INFRA_BLESSING_KEY = standard_component_specs.INFRA_BLESSING_KEY
PUSHED_MODEL_KEY = standard_component_specs.PUSHED_MODEL_KEY
PUSH_DESTINATION_KEY = standard_component_specs.PUSH_DESTINATION_KEY
DESTINATION_KEY = "destination"

SERVING_VOLUME = "serving_volume"
CLOUD_RUN = "cloud_run"

# Custom properties of the PushedModel (the first three as the stock Pusher writes them).
PUSHED = "pushed"
PUSHED_DESTINATION = "pushed_destination"
PUSHED_VERSION = "pushed_version"
REFUSED_BY = "refused_by"
VERIFICATION = "verification"
VERIFICATION_MESSAGE = "verification_message"
ROLLED_BACK = "rolled_back"
# A fleet push: each replica's last state (JSON list); a watched push: the watch's figures (JSON)
# and its verdict (passed, failed: rolled back, inconclusive: too little traffic to judge).
REPLICAS = "replicas"
WATCH = "watch"
WATCH_VERDICT = "watch_verdict"
# Set by InfraValidator (and ServingCanary) when the blessing carries a warmed-up model.
_INFRA_BLESSING_HAS_MODEL = "has_model"


class PushError(RuntimeError):
    """The pusher cannot run as configured (unknown destination, no model to push)."""


@dataclass
class PushOutcome:
    """What a destination function reports back; recorded on the PushedModel artifact."""

    pushed: bool
    destination: str = ""
    version: str = ""
    verification: str = ""
    message: str = ""
    rolled_back: bool = False
    # Further destination-specific custom properties (str or int values).
    properties: dict[str, str | int] = field(default_factory=dict)


def push_to_serving_volume(model_dir: Path, push_destination: str) -> PushOutcome:
    """Returns the outcome of pushing `model_dir` per a VolumePushConfig JSON object."""
    from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume

    result = push_to_volume(model_dir, VolumePushConfig.from_json(push_destination))
    return PushOutcome(
        pushed=result.pushed,
        destination=result.destination,
        version="" if result.version is None else str(result.version),
        verification=result.verification,
        message=result.message,
        rolled_back=result.rolled_back,
        properties=_volume_properties(result),
    )


def _volume_properties(result: Any) -> dict[str, str | int]:
    """Returns the PushedModel's volume-specific properties: labels, retention, replicas, watch."""
    properties: dict[str, str | int] = {
        "version_labels": json.dumps(result.labels, sort_keys=True),
        "removed_versions": json.dumps(result.removed_versions),
    }
    if result.replicas:
        properties[REPLICAS] = json.dumps(result.replicas, sort_keys=True)
    if result.watch is not None:
        properties[WATCH] = json.dumps(result.watch, sort_keys=True)
        properties[WATCH_VERDICT] = result.watch["verdict"]
    return properties


def push_to_cloud_run_destination(model_dir: Path, push_destination: str) -> PushOutcome:
    """Returns the outcome of an image build + Cloud Run deploy per a CloudRunConfig JSON.

    A registry or Cloud Run API error, or an operation that timed out, is recorded as
    pushed=0 with the error (verification "timeout" or "error"); a finished Cloud Run
    operation means the revision passed its startup probe (verification "available").
    """
    from tfx_serving_ext.cloud_run import (
        CloudRunConfig,
        CloudRunError,
        DeployTimeout,
        push_to_cloud_run,
    )
    from tfx_serving_ext.cloud_run.config import MODE_CLOUD_RUN

    config = CloudRunConfig.from_json(push_destination)
    try:
        result = push_to_cloud_run(model_dir, config)
    except CloudRunError as e:
        return PushOutcome(
            pushed=False,
            destination=config.service or config.image_repository,
            verification="timeout" if isinstance(e, DeployTimeout) else "error",
            message=f"{type(e).__name__}: {e}",
        )
    deployed = config.mode == MODE_CLOUD_RUN
    return PushOutcome(
        pushed=True,
        destination=result.tag_url or result.service_url or result.knative_manifest or result.image,
        version=str(result.model_version),
        verification="available" if deployed else "not_verified",
        properties={
            "image": result.image,
            "image_digest": result.image_digest,
            "revision_name": result.revision,
            "service_url": result.service_url,
            "tag_url": result.tag_url,
            "knative_manifest": result.knative_manifest,
            "traffic": json.dumps(result.traffic),
        },
    )


DESTINATIONS: dict[str, Callable[[Path, str], PushOutcome]] = {
    SERVING_VOLUME: push_to_serving_volume,
    CLOUD_RUN: push_to_cloud_run_destination,
}


def blessing_refusals(input_dict: dict[str, list[types.Artifact]]) -> list[str]:
    """Returns one line per given blessing whose `blessed` custom property is not 1.

    A blessing channel that was connected but resolved to no artifact (its key is present with
    an empty list; unconnected optional inputs are absent) is a refusal too: no verdict.
    """
    refusals = []
    for key in (MODEL_BLESSING_KEY, INFRA_BLESSING_KEY):
        if key in input_dict and not input_dict[key]:
            refusals.append(f"{key} was given but resolved to no artifact: no verdict to push on")
        for blessing in input_dict.get(key) or []:
            # As the stock Pusher: a missing property reads as 0, i.e. not blessed.
            if blessing.get_int_custom_property("blessed") != 1:
                refusals.append(f"{key} ({blessing.type_name} at {blessing.uri}) is not blessed")
    return refusals


def resolve_model_dir(input_dict: dict[str, list[types.Artifact]]) -> Path:
    """Returns the SavedModel to push: the InfraBlessing's warmed-up model if it has one.

    Raises:
        PushError: neither input holds a model.
    """
    infra = input_dict.get(INFRA_BLESSING_KEY) or []
    if infra:
        blessing = artifact_utils.get_single_instance(infra)
        stamped = Path(path_utils.stamped_model_path(artifact_path(blessing)))
        if blessing.get_int_custom_property(_INFRA_BLESSING_HAS_MODEL) and is_saved_model_dir(
            stamped
        ):
            logger.info("Pushing the warmed-up model carried by the InfraBlessing: %s", stamped)
            return stamped
    models = input_dict.get(MODEL_KEY) or []
    if not models:
        raise PushError(
            "no model to push: give `model`, or an `infra_blessing` made with "
            "RequestSpec.make_warmup=True (it carries the model)"
        )
    return find_serving_model_dir(artifact_path(artifact_utils.get_single_instance(models)))


class Executor(base_executor.BaseExecutor):
    """Pushes the model when every given blessing blesses it, then records the outcome."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Pushes (or refuses to) and records `pushed`, `pushed_version`, ... on the output.

        Raises:
            PushError: unknown destination, or no model among the inputs.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed_model = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        refusals = blessing_refusals(input_dict)
        if refusals:
            logger.warning("Not pushing: %s", "; ".join(refusals))
            pushed_model.set_int_custom_property(PUSHED, 0)
            pushed_model.set_string_custom_property(REFUSED_BY, "; ".join(refusals))
            return
        destination = exec_properties.get(DESTINATION_KEY) or SERVING_VOLUME
        if destination not in DESTINATIONS:
            raise PushError(f"unknown destination {destination!r}; known: {sorted(DESTINATIONS)}")
        model_dir = resolve_model_dir(input_dict)
        outcome = DESTINATIONS[destination](model_dir, exec_properties[PUSH_DESTINATION_KEY])
        _record(pushed_model, outcome)
        if outcome.pushed:
            # As the stock Pusher: keep a copy of what was pushed with the artifact.
            shutil.copytree(model_dir, artifact_path(pushed_model), dirs_exist_ok=True)
        else:
            logger.error("Push to %s failed: %s", destination, outcome.message)


def _record(artifact: types.Artifact, outcome: PushOutcome) -> None:
    artifact.set_int_custom_property(PUSHED, int(outcome.pushed))
    if outcome.destination:
        artifact.set_string_custom_property(PUSHED_DESTINATION, outcome.destination)
    if outcome.version:
        artifact.set_string_custom_property(PUSHED_VERSION, outcome.version)
    artifact.set_string_custom_property(VERIFICATION, outcome.verification)
    artifact.set_string_custom_property(VERIFICATION_MESSAGE, outcome.message)
    artifact.set_int_custom_property(ROLLED_BACK, int(outcome.rolled_back))
    for key, value in outcome.properties.items():
        if isinstance(value, int):
            artifact.set_int_custom_property(key, value)
        else:
            artifact.set_string_custom_property(key, str(value))


__all__ = [
    "DESTINATIONS",
    "Executor",
    "PushError",
    "PushOutcome",
    "blessing_refusals",
    "resolve_model_dir",
]
