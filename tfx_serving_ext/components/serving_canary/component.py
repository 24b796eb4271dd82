"""ServingCanary: serve the candidate beside what serves now, drive traffic, judge, bless.

Usage:
    canary = ServingCanary(
        model=warmup_writer.outputs["model"],
        examples=example_gen.outputs["examples"],
        serving_baseline={"base_directory": "/serving/penguin"},  # what serves now; or
        # baseline=latest_pushed_model.outputs["pushed_model"],  # a Model or a PushedModel
        serving_spec=infra_validator_pb2.ServingSpec(
            tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=["2.19.1"]),
            local_docker=infra_validator_pb2.LocalDockerConfig()),
        validation_spec=infra_validator_pb2.ValidationSpec(max_loading_time_seconds=120),
        config=CanaryConfig(num_requests=500, concurrency=8,
                            thresholds=CanaryThresholds(max_p99_ratio=1.3)),
    )
    pusher = Pusher(model=..., infra_blessing=canary.outputs["blessing"], ...)

It takes InfraValidator's own protos, so InfraValidator users switch with the config they have,
but it is not an InfraValidator subclass: KubeflowV2DagRunner refuses those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import infra_validator_pb2
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_serving_ext.canary.config import CanaryConfig
from tfx_serving_ext.components.serving_baseline import ServingBaseline
from tfx_serving_ext.components.serving_canary import executor


class ServingCanarySpec(ComponentSpec):
    """ServingCanary's inputs, parameters (InfraValidator's protos + canary JSON), output."""

    PARAMETERS = {
        executor.SERVING_SPEC_KEY: ExecutionParameter(
            type=infra_validator_pb2.ServingSpec, optional=True
        ),
        executor.VALIDATION_SPEC_KEY: ExecutionParameter(
            type=infra_validator_pb2.ValidationSpec, optional=True
        ),
        executor.REQUEST_SPEC_KEY: ExecutionParameter(
            type=infra_validator_pb2.RequestSpec, optional=True
        ),
        # CanaryConfig as JSON: traffic, backend, thresholds.
        executor.CANARY_CONFIG_KEY: ExecutionParameter(type=str, optional=True),
        # ServingBaseline as JSON: the baseline is what serves now (server or volume).
        executor.SERVING_BASELINE_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        executor.BASELINE_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        executor.BASELINE_PUSHED_MODEL_KEY: ChannelParameter(
            type=standard_artifacts.PushedModel, optional=True
        ),
    }
    OUTPUTS = {
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing),
    }


class ServingCanary(base_component.BaseComponent):
    """Blesses a model that loads, answers, keeps latency and agrees with the baseline.

    Emits a standard InfraBlessing (INFRA_BLESSED / INFRA_NOT_BLESSED and the `blessed` int
    property, as InfraValidator writes them) holding report.json, report.html, when the
    model did not load server.log, and with RequestSpec.make_warmup the warmed model
    (`stamped_model`, `has_model=1`).
    """

    SPEC_CLASS = ServingCanarySpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel | None = None,
        baseline: types.BaseChannel | None = None,
        serving_spec: infra_validator_pb2.ServingSpec | None = None,
        validation_spec: infra_validator_pb2.ValidationSpec | None = None,
        request_spec: infra_validator_pb2.RequestSpec | None = None,
        config: CanaryConfig | Mapping[str, Any] | str | None = None,
        backend: str | None = None,
        serving_baseline: ServingBaseline | Mapping[str, Any] | str | None = None,
    ):
        """Builds the component.

        Args:
            model: the candidate Model (normally the warmed model of WarmupRequestWriter).
            examples: Examples for the traffic; absent means load-only validation.
            baseline: what serves now, a Model or a PushedModel channel; absent on a first
                deployment (then only absolute thresholds apply).
            serving_spec: InfraValidator's ServingSpec: model name, TF Serving images (every
                tag and digest of `tensorflow_serving` is run, and must pass, as in
                InfraValidator) and platform (`local_docker` / `kubernetes`); without a
                platform the embedded server runs the canary.
            validation_spec: InfraValidator's ValidationSpec (loading deadline, tries).
            request_spec: InfraValidator's RequestSpec (signatures, tag set, split,
                number of distinct examples; `make_warmup`: the blessing carries the model
                with the canary's requests as its warmup file, `has_model=1`, as InfraValidator).
            config: CanaryConfig (or its dict/JSON): requests, concurrency, thresholds, backend.
            backend: shortcut for `config.backend` (e.g. "embedded" to skip Docker/Kubernetes).
            serving_baseline: take as baseline what serves now instead of `baseline`:
                ServingBaseline (or its dict/JSON: `base_directory`, `model_name`,
                `server_address`): the version the server reports AVAILABLE, or without an
                address the newest complete version on the volume. Needs no resolver, so it
                runs on every orchestrator.

        Raises:
            CanaryConfigError, ThresholdsError: the config cannot be understood.
            ValueError: both `baseline` and `serving_baseline`, or a bad serving_baseline.
        """
        serving_baseline = ServingBaseline.from_value(serving_baseline)
        if serving_baseline is not None and baseline is not None:
            raise ValueError(
                "Give either baseline (a resolver's output) or serving_baseline (what serves "
                "now), not both"
            )
        canary_config = CanaryConfig.from_value(config)
        if backend:
            canary_config = CanaryConfig.from_value({**canary_config.to_dict(), "backend": backend})
        pushed_baseline = None
        if baseline is not None and baseline.type_name == standard_artifacts.PushedModel.TYPE_NAME:
            baseline, pushed_baseline = None, baseline
        spec = ServingCanarySpec(
            model=model,
            examples=examples,
            baseline=baseline,
            baseline_pushed_model=pushed_baseline,
            serving_spec=serving_spec,
            validation_spec=validation_spec,
            request_spec=request_spec,
            canary_config=canary_config.to_json(),
            serving_baseline=serving_baseline.to_json() if serving_baseline else "",
            blessing=types.Channel(type=standard_artifacts.InfraBlessing),
        )
        super().__init__(spec=spec)
