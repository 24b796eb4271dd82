"""WarmupRequestWriter: the TFX component that adds a TF Serving warmup file to a model.

Usage:
    warmup = WarmupRequestWriter(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        num_examples=50,
    ).with_beam_pipeline_args(["--direct_num_workers=2"])
    # warmup.outputs["warmed_model"] is a Model: push it instead of the Trainer's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from tfx_serving_ext.components.warmup_request_writer import executor


class WarmupRequestWriterSpec(ComponentSpec):
    """WarmupRequestWriter's inputs, parameters and output."""

    PARAMETERS = {
        executor.SPLIT_KEY: ExecutionParameter(type=str, optional=True),
        executor.NUM_EXAMPLES_KEY: ExecutionParameter(type=int, optional=True),
        # JSON list of signature names; "" means every serving signature.
        executor.SIGNATURE_NAMES_KEY: ExecutionParameter(type=str, optional=True),
        executor.ITERATIONS_KEY: ExecutionParameter(type=int, optional=True),
        executor.MODEL_NAME_KEY: ExecutionParameter(type=str, optional=True),
        executor.TAGS_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        executor.OUTPUT_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
    }


class WarmupRequestWriter(base_beam_component.BaseBeamComponent):
    """Emits a copy of the model with `assets.extra/tf_serving_warmup_requests` (<= 1000 records).

    Examples are sampled uniformly from the whole split with Apache Beam (DirectRunner unless
    `beam_pipeline_args` say otherwise), holding only the sample in memory, the same sample on
    every run of the same split; one request per sampled example and signature, of the kind TF
    Serving expects (Predict / Classify / Regress); every request is replayed in-process before the
    file is written, so a failing one stops the component. The output Model carries the int
    custom properties `warmup_records` and `warmup_records_<signature>`.
    """

    SPEC_CLASS = WarmupRequestWriterSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        split: str | None = None,
        num_examples: int = executor.DEFAULT_NUM_EXAMPLES,
        signature_names: Sequence[str] | None = None,
        num_request_iterations: int = 1,
        model_name: str = "model",
        tags: Sequence[str] = ("serve",),
    ):
        """Builds the component.

        Args:
            model: the Model to warm up (TFX Trainer layout or a bare SavedModel).
            examples: Examples to sample requests from.
            split: the split to sample (default: eval, else the first).
            num_examples: examples sampled; one record each per signature, capped so the
                file never exceeds TF Serving's 1000 records.
            signature_names: signatures to warm up (default: every serving signature).
            num_request_iterations: a hint, recorded on the output, for the server's
                `--num_request_iterations_for_warmup`; records are replayed that often here.
            model_name: `model_spec.name` in the records (TF Serving ignores it in warmup).
            tags: the meta graph tag set TF Serving loads.

        Raises:
            ValueError: num_examples or num_request_iterations is below 1.
        """
        if num_examples < 1 or num_request_iterations < 1:
            raise ValueError("num_examples and num_request_iterations must be at least 1")
        spec = WarmupRequestWriterSpec(
            model=model,
            examples=examples,
            split=split or "",
            num_examples=num_examples,
            signature_names=json.dumps(list(signature_names)) if signature_names else "",
            num_request_iterations=num_request_iterations,
            model_name=model_name,
            tags=json.dumps(list(tags)),
            warmed_model=types.Channel(type=standard_artifacts.Model),
        )
        super().__init__(spec=spec)
