"""WarmupRequestWriter's executor: sample with Beam, build and replay requests, emit the model."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from tfx_serving_ext.checks.example_sampling import sample_examples, with_local_runner
from tfx_serving_ext.checks.examples import available_splits, choose_split, split_pattern
from tfx_serving_ext.checks.warmup import build_warmup_model
from tfx_serving_ext.components.artifact_paths import artifact_path
from tfx_serving_ext.protocol.saved_model import SERVE_TAG

logger = logging.getLogger(__name__)

MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
OUTPUT_MODEL_KEY = "warmed_model"
SPLIT_KEY = "split"
NUM_EXAMPLES_KEY = "num_examples"
SIGNATURE_NAMES_KEY = "signature_names"
ITERATIONS_KEY = "num_request_iterations"
MODEL_NAME_KEY = "model_name"
TAGS_KEY = "tags"

DEFAULT_NUM_EXAMPLES = 100
# Custom properties of the output Model.
RECORDS_PROPERTY = "warmup_records"
RECORDS_PER_SIGNATURE_PREFIX = "warmup_records_"
SKIPPED_PROPERTY = "warmup_skipped_signatures"
ITERATIONS_PROPERTY = "warmup_request_iterations"


class Executor(base_beam_executor.BaseBeamExecutor):
    """Writes a copy of the model with `assets.extra/tf_serving_warmup_requests`."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Samples `examples`, builds and replays warmup records, writes `warmed_model`.

        Raises:
            SavedModelError: the model has no readable SavedModel.
            ExamplesError: the split is missing or empty.
            WarmupError / WarmupReplayError: no record could be built, or one fails.
        """
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        output = artifact_utils.get_single_instance(output_dict[OUTPUT_MODEL_KEY])
        split = choose_split(
            available_splits(artifact_path(examples), examples.split_names or None),
            exec_properties.get(SPLIT_KEY) or None,
        )
        num_examples = int(exec_properties.get(NUM_EXAMPLES_KEY) or DEFAULT_NUM_EXAMPLES)
        iterations = int(exec_properties.get(ITERATIONS_KEY) or 1)
        self._beam_pipeline_args = with_local_runner(self._beam_pipeline_args)
        work_dir = Path(tempfile.mkdtemp(prefix="warmup-sample-", dir=self._work_root()))
        try:
            sample = sample_examples(
                split_pattern(artifact_path(examples), split),
                num_examples,
                work_dir,
                pipeline=self._make_beam_pipeline(),
            )
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        result = build_warmup_model(
            artifact_path(model),
            artifact_path(output),
            sample,
            signature_names=json.loads(exec_properties.get(SIGNATURE_NAMES_KEY) or "null"),
            model_name=exec_properties.get(MODEL_NAME_KEY) or "model",
            tags=json.loads(exec_properties.get(TAGS_KEY) or "null") or [SERVE_TAG],
            iterations=iterations,
        )
        output.set_int_custom_property(RECORDS_PROPERTY, result.total_records)
        for name, count in result.records_per_signature.items():
            output.set_int_custom_property(RECORDS_PER_SIGNATURE_PREFIX + name, count)
        output.set_string_custom_property(SKIPPED_PROPERTY, json.dumps(result.skipped))
        output.set_int_custom_property(ITERATIONS_PROPERTY, iterations)
        logger.info(
            "Warmup file with %d records (%s) from %d examples of split '%s'",
            result.total_records,
            result.records_per_signature,
            len(sample),
            split,
        )

    def _work_root(self) -> str | None:
        try:
            return self._get_tmp_dir()
        except RuntimeError:  # no executor context (called directly, e.g. in tests)
            return None
