"""ServingPusher: the TFX component that pushes a blessed model to a serving volume.

Usage:
    pusher = ServingPusher(
        model=trainer.outputs["model"],
        model_blessing=signature_validator.outputs["blessing"],
        infra_blessing=canary.outputs["blessing"],
        push_destination={
            "base_directory": "/serving/penguin",
            "model_name": "penguin",
            "server_address": "127.0.0.1:8500",
            "keep_versions": 3,
        },
    )
"""

from __future__ import annotations

import json
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_serving_ext.components.serving_pusher import executor
from tfx_serving_ext.publish.push import VolumePushConfig


class ServingPusherSpec(ComponentSpec):
    """ServingPusher's inputs (the model and its blessings), parameters and output."""

    PARAMETERS = {
        # Which destination function runs: "serving_volume" (more to come, e.g. "cloud_run").
        executor.DESTINATION_KEY: ExecutionParameter(type=str),
        # The destination's settings as a JSON object (for serving_volume: VolumePushConfig).
        executor.PUSH_DESTINATION_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        executor.MODEL_BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.ModelBlessing, optional=True
        ),
        executor.INFRA_BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.InfraBlessing, optional=True
        ),
    }
    OUTPUTS = {
        executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    }


class ServingPusher(base_component.BaseComponent):
    """Pushes the model when every given blessing says so; emits a standard PushedModel.

    The PushedModel carries `pushed` (1/0), `pushed_destination`, `pushed_version` as the stock
    Pusher writes them, plus `verification` ("available", "load_failed", "timeout",
    "unreachable", "not_verified"), `verification_message`, `rolled_back`, `refused_by`,
    `version_labels` and `removed_versions`. A fleet push (`fleet` in the push destination)
    adds `replicas` (JSON: each replica's address and last state); a watched push
    (`watch_seconds`) adds `watch` (JSON: the figures of both versions, replayed and from the
    replicas' metrics, the verdict and its reasons) and `watch_verdict`. A version the watch
    rolled back is a successful run with `pushed=0`, `rolled_back=1` and the reason in
    `verification_message`.
    """

    SPEC_CLASS = ServingPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel | None = None,
        model_blessing: types.BaseChannel | None = None,
        infra_blessing: types.BaseChannel | None = None,
        push_destination: VolumePushConfig | dict[str, Any] | str | None = None,
        destination: str = executor.SERVING_VOLUME,
    ):
        """Builds the component.

        Args:
            model: the Model to push (TFX Trainer layout or a bare SavedModel).
            model_blessing: a ModelBlessing (SignatureValidator's or the Evaluator's).
            infra_blessing: an InfraBlessing (ServingCanary's or InfraValidator's); if it
                carries a warmed-up model (make_warmup), that model is pushed.
            push_destination: the destination's settings: for "serving_volume" a
                VolumePushConfig, or a dict / JSON string of its fields.
            destination: which destination to push to ("serving_volume", or "cloud_run"
                with a tfx_serving_ext.cloud_run.CloudRunConfig / dict / JSON string).

        Raises:
            ValueError: no model input, unknown destination, or invalid settings.
        """
        if model is None and infra_blessing is None:
            raise ValueError("give `model`, or an `infra_blessing` that carries a warmed-up model")
        if destination not in executor.DESTINATIONS:
            raise ValueError(
                f"unknown destination {destination!r}; known: {sorted(executor.DESTINATIONS)}"
            )
        if push_destination is None:
            raise ValueError("push_destination is required (e.g. {'base_directory': ...})")
        if hasattr(push_destination, "to_json"):  # VolumePushConfig or CloudRunConfig
            push_json = push_destination.to_json()
        elif isinstance(push_destination, str):
            push_json = push_destination
        else:
            push_json = json.dumps(push_destination, sort_keys=True)
        if destination == executor.SERVING_VOLUME:
            VolumePushConfig.from_json(push_json)  # fail at pipeline construction, not at run
        elif destination == executor.CLOUD_RUN:
            from tfx_serving_ext.cloud_run.config import CloudRunConfig

            CloudRunConfig.from_json(push_json)
        spec = ServingPusherSpec(
            model=model,
            model_blessing=model_blessing,
            infra_blessing=infra_blessing,
            destination=destination,
            push_destination=push_json,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        )
        super().__init__(spec=spec)
