"""SignatureValidator: the TFX component refusing a model whose serving interface breaks clients.

Usage:
    validator = SignatureValidator(
        model=trainer.outputs["model"],
        serving_baseline={"base_directory": "/serving/penguin"},  # or baseline_model=<resolver>
        examples=example_gen.outputs["examples"],
        contract={"serving_default": {"method": "predict",
                                      "inputs": {"examples": {"dtype": "string"}}}},
    )
    pusher = Pusher(model=trainer.outputs["model"],
                    model_blessing=validator.outputs["blessing"], ...)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_serving_ext.components.serving_baseline import ServingBaseline
from tfx_serving_ext.components.signature_validator import executor
from tfx_serving_ext.protocol.signatures import BreakingChangePolicy, ServingContract


class SignatureValidatorSpec(ComponentSpec):
    """SignatureValidator's inputs, parameters (JSON strings and ints) and output."""

    PARAMETERS = {
        # ServingContract as JSON; "" checks no contract.
        executor.CONTRACT_KEY: ExecutionParameter(type=str, optional=True),
        # The tag set as a JSON list (default ["serve"]).
        executor.TAGS_KEY: ExecutionParameter(type=str, optional=True),
        # BreakingChangePolicy as JSON (switches for what counts as breaking).
        executor.POLICY_KEY: ExecutionParameter(type=str, optional=True),
        # How many examples make the one batch each signature is run on.
        executor.NUM_EXAMPLES_KEY: ExecutionParameter(type=int, optional=True),
        executor.SPLIT_KEY: ExecutionParameter(type=str, optional=True),
        # ServingBaseline as JSON: the baseline is what serves now (server or volume).
        executor.SERVING_BASELINE_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS = {
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class SignatureValidator(base_component.BaseComponent):
    """Blesses a model whose signatures keep their contract; emits a standard ModelBlessing.

    The blessing directory holds an empty `BLESSED` or `NOT_BLESSED` file and `report.json`
    (every check, passed or failed, with its message); the artifact carries the int custom
    property `blessed` (1/0), as the Evaluator writes it, so the stock Pusher honours it.
    """

    SPEC_CLASS = SignatureValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        baseline_model: types.BaseChannel | None = None,
        examples: types.BaseChannel | None = None,
        contract: ServingContract | Mapping[str, Any] | str | None = None,
        tags: Sequence[str] = ("serve",),
        breaking_changes: BreakingChangePolicy | Mapping[str, bool] | str | None = None,
        num_examples: int = executor.DEFAULT_NUM_EXAMPLES,
        split: str | None = None,
        serving_baseline: ServingBaseline | Mapping[str, Any] | str | None = None,
    ):
        """Builds the component.

        Args:
            model: the candidate Model (TFX Trainer layout or a bare SavedModel).
            baseline_model: the Model serving now (e.g. from a latest-blessed resolver); its
                signatures must all survive in the candidate.
            examples: Examples; each signature is then run once on `num_examples` of them,
                sampled from across all the split's files in bounded reads.
            contract: the interface clients expect (ServingContract, dict or JSON); partial
                contracts check only what they state.
            tags: the meta graph tag set TF Serving loads.
            breaking_changes: BreakingChangePolicy (or dict/JSON of its switches).
            num_examples: size of the batch each signature is run on.
            split: the examples' split (default: eval, else the first).
            serving_baseline: take as baseline what serves now instead of `baseline_model`:
                ServingBaseline (or its dict/JSON: `base_directory`, `model_name`,
                `server_address`): the version the server reports AVAILABLE, or without an
                address the newest complete version on the volume. Needs no resolver, so it
                runs on every orchestrator.

        Raises:
            ContractError: the contract or the policy cannot be parsed.
            ValueError: both `baseline_model` and `serving_baseline`, or a bad serving_baseline.
        """
        serving_baseline = ServingBaseline.from_value(serving_baseline)
        if serving_baseline is not None and baseline_model is not None:
            raise ValueError(
                "Give either baseline_model (a resolver's output) or serving_baseline (what "
                "serves now), not both"
            )
        contract_json = ServingContract.from_value(contract).to_json()
        policy_json = BreakingChangePolicy.from_value(breaking_changes).to_json()
        spec = SignatureValidatorSpec(
            model=model,
            baseline_model=baseline_model,
            examples=examples,
            contract=contract_json,
            tags=json.dumps(list(tags)),
            breaking_changes=policy_json,
            num_examples=num_examples,
            split=split or "",
            serving_baseline=serving_baseline.to_json() if serving_baseline else "",
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        )
        super().__init__(spec=spec)
