"""SignatureValidator's executor: resolve artifacts, validate, write the ModelBlessing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from tfx_serving_ext.checks.examples import read_examples
from tfx_serving_ext.checks.model_validation import validate_model
from tfx_serving_ext.components.artifact_paths import artifact_path
from tfx_serving_ext.components.kfp_artifact_names import (
    runtime_artifact_names,
    set_artifact_reference,
)
from tfx_serving_ext.components.serving_baseline import ServingBaseline, find_serving_now
from tfx_serving_ext.protocol.saved_model import SERVE_TAG
from tfx_serving_ext.protocol.signatures import BreakingChangePolicy, ServingContract

logger = logging.getLogger(__name__)

MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
EXAMPLES_KEY = "examples"
BLESSING_KEY = "blessing"
CONTRACT_KEY = "contract"
TAGS_KEY = "tags"
POLICY_KEY = "breaking_changes"
NUM_EXAMPLES_KEY = "num_examples"
SPLIT_KEY = "split"
SERVING_BASELINE_KEY = "serving_baseline"

# As tfx.components.evaluator.constants writes them, so the stock Pusher reads our blessing.
BLESSED_PROPERTY = "blessed"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
REPORT_FILE = "report.json"
DEFAULT_NUM_EXAMPLES = 4


# The Evaluator also names the models it judged; TFX's LatestBlessedModelStrategy pairs a
# blessing with its model through `current_model_id`.
CURRENT_MODEL_PROPERTY = "current_model"
CURRENT_MODEL_ID_PROPERTY = "current_model_id"
BASELINE_MODEL_PROPERTY = "baseline_model"
BASELINE_MODEL_ID_PROPERTY = "baseline_model_id"
# With a serving baseline: the version that served and who said so ("server" or "volume").
BASELINE_VERSION_PROPERTY = "baseline_version"
BASELINE_SOURCE_PROPERTY = "baseline_source"


def write_blessing(
    blessing: types.Artifact,
    blessed: bool,
    report_json: str,
    model: types.Artifact | None = None,
    baseline: types.Artifact | None = None,
) -> None:
    """Writes BLESSED or NOT_BLESSED, report.json and the Evaluator's properties into `blessing`.

    `current_model_id` / `baseline_model_id` name the models as the orchestrator knows them: MLMD
    ids, or under the KFP v2 entrypoint their runtime names (what the compiled
    LatestBlessedModelStrategy matches on Vertex).
    """
    directory = Path(artifact_path(blessing))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (BLESSED_FILE if blessed else NOT_BLESSED_FILE)).write_text("")
    (directory / REPORT_FILE).write_text(report_json)
    blessing.set_int_custom_property(BLESSED_PROPERTY, 1 if blessed else 0)
    names = runtime_artifact_names()
    for artifact, uri_key, id_key in (
        (model, CURRENT_MODEL_PROPERTY, CURRENT_MODEL_ID_PROPERTY),
        (baseline, BASELINE_MODEL_PROPERTY, BASELINE_MODEL_ID_PROPERTY),
    ):
        if artifact is not None:
            blessing.set_string_custom_property(uri_key, artifact.uri)
            set_artifact_reference(blessing, id_key, artifact, names)


class Executor(base_executor.BaseExecutor):
    """Validates the model's serving interface; a refused model is a successful run, blessed=0."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Validates `model` (against `baseline_model`, on `examples`) and writes `blessing`.

        With the `serving_baseline` parameter the baseline is what serves now (see
        `serving_baseline.find_serving_now`) instead of the `baseline_model` input.

        Raises:
            SavedModelError: the model or the baseline has no readable SavedModel.
            ServingBaselineError: what serves now cannot be determined.
        """
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        # A resolver may hand back the candidate itself as "latest blessed"; that is no baseline.
        baseline = next((b for b in baselines if b.uri != model.uri), None)
        baseline_dir = artifact_path(baseline) if baseline is not None else None
        serving_now = None
        serving_baseline = ServingBaseline.from_value(exec_properties.get(SERVING_BASELINE_KEY))
        if serving_baseline is not None:
            serving_now = find_serving_now(serving_baseline)
            baseline_dir = str(serving_now.directory) if serving_now else None
        examples = None
        if input_dict.get(EXAMPLES_KEY):
            artifact = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
            examples = read_examples(
                artifact_path(artifact),
                exec_properties.get(SPLIT_KEY) or None,
                limit=int(exec_properties.get(NUM_EXAMPLES_KEY) or DEFAULT_NUM_EXAMPLES),
                split_names=artifact.split_names or None,
            )
        tags = json.loads(exec_properties.get(TAGS_KEY) or "null") or [SERVE_TAG]
        report = validate_model(
            artifact_path(model),
            baseline_uri=baseline_dir,
            examples=examples,
            contract=ServingContract.from_value(exec_properties.get(CONTRACT_KEY) or None),
            policy=BreakingChangePolicy.from_value(exec_properties.get(POLICY_KEY) or None),
            tags=tags,
        )
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        write_blessing(blessing, report.blessed, report.to_json(), model=model, baseline=baseline)
        if serving_now is not None:
            blessing.set_string_custom_property(BASELINE_MODEL_PROPERTY, str(serving_now.directory))
            blessing.set_int_custom_property(BASELINE_VERSION_PROPERTY, serving_now.version)
            blessing.set_string_custom_property(BASELINE_SOURCE_PROPERTY, serving_now.source)
        for check in report.failures:
            logger.warning("Refused: [%s] %s", check.signature or "model", check.message)
        logger.info("Model %s %s", model.uri, "blessed" if report.blessed else "NOT blessed")
