"""ServingCanary's executor: resolve artifacts and specs, run the canary, write the blessing."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.proto import infra_validator_pb2
from tfx.types import artifact_utils
from tfx.utils import proto_utils

from tfx_serving_ext.canary.run import CanaryConfig, run_canary
from tfx_serving_ext.canary.warmed_model import write_warmed_model
from tfx_serving_ext.checks.examples import read_examples
from tfx_serving_ext.components.artifact_paths import artifact_path
from tfx_serving_ext.components.serving_baseline import ServingBaseline, find_serving_now

logger = logging.getLogger(__name__)

MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
BASELINE_KEY = "baseline"
BASELINE_PUSHED_MODEL_KEY = "baseline_pushed_model"
BLESSING_KEY = "blessing"
SERVING_SPEC_KEY = "serving_spec"
VALIDATION_SPEC_KEY = "validation_spec"
REQUEST_SPEC_KEY = "request_spec"
CANARY_CONFIG_KEY = "canary_config"
SERVING_BASELINE_KEY = "serving_baseline"

# As InfraValidator writes them, so the stock Pusher honours our blessing.
BLESSED_PROPERTY = "blessed"
HAS_MODEL_PROPERTY = "has_model"
# With a serving baseline: the version the candidate was compared with and who said it serves.
BASELINE_VERSION_PROPERTY = "baseline_version"
BASELINE_SOURCE_PROPERTY = "baseline_source"
# Who gave the verdict (canary.server_identity): the embedded server and its TensorFlow, a TF
# Serving image and its digest, or an endpoint's address.
SERVER_PROPERTY = "server"
SERVER_KIND_PROPERTY = "server_kind"
TF_SERVING_PROPERTY = "tf_serving"
SERVER_TENSORFLOW_VERSION_PROPERTY = "server_tensorflow_version"
SERVER_IMAGE_PROPERTY = "server_image"
SERVER_IMAGE_DIGEST_PROPERTY = "server_image_digest"
SERVER_ADDRESS_PROPERTY = "server_address"
SERVER_VERSION_PROPERTY = "server_version"
SERVER_IMAGE_ID_PROPERTY = "server_image_id"
BLESSED_FILE = "INFRA_BLESSED"
NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"


def write_infra_blessing(blessing: types.Artifact, blessed: bool) -> None:
    """Writes INFRA_BLESSED or INFRA_NOT_BLESSED and the `blessed` property, as InfraValidator."""
    directory = Path(artifact_path(blessing))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / (BLESSED_FILE if blessed else NOT_BLESSED_FILE)).write_text("")
    blessing.set_int_custom_property(BLESSED_PROPERTY, 1 if blessed else 0)
    # No model in the blessing unless make_warmup puts the warmed one there (`add_warmed_model`).
    blessing.set_int_custom_property(HAS_MODEL_PROPERTY, 0)


def add_warmed_model(blessing: types.Artifact, result, request_spec) -> None:
    """Puts the warmed model into a blessing when RequestSpec.make_warmup asks, as InfraValidator.

    Only a blessed model with requests gets one (InfraValidator's rule); `has_model` is then 1
    and the stock Pusher and ServingPusher push `<blessing>/stamped_model`.
    """
    if not (request_spec.make_warmup and result.blessed):
        return
    if not result.requests:
        logger.warning(
            "RequestSpec.make_warmup is set but the canary sent no request (no examples, or none "
            "fit the signatures): the blessing carries no warmed model; give it `examples`"
        )
        return
    write_warmed_model(result.candidate_dir, artifact_path(blessing), result.requests)
    blessing.set_int_custom_property(HAS_MODEL_PROPERTY, 1)


def record_server(
    blessing: types.Artifact,
    server: dict[str, Any] | None,
    images: list[dict[str, Any]] | None = None,
) -> None:
    """Sets the blessing's properties that name the server which gave the verdict.

    With several images (every tag and digest of the ServingSpec), `server_image`,
    `server_image_digest` and `server_image_id` list each one's, comma-separated, in order.
    """
    if not server:
        blessing.set_string_custom_property(SERVER_PROPERTY, "none (nothing was served)")
        blessing.set_int_custom_property(TF_SERVING_PROPERTY, 0)
        return
    blessing.set_string_custom_property(SERVER_PROPERTY, server.get("description") or "")
    blessing.set_string_custom_property(SERVER_KIND_PROPERTY, server.get("kind") or "")
    blessing.set_int_custom_property(TF_SERVING_PROPERTY, 1 if server.get("tf_serving") else 0)
    for key, name in (
        ("tensorflow_version", SERVER_TENSORFLOW_VERSION_PROPERTY),
        ("image", SERVER_IMAGE_PROPERTY),
        ("image_digest", SERVER_IMAGE_DIGEST_PROPERTY),
        ("image_id", SERVER_IMAGE_ID_PROPERTY),
        ("address", SERVER_ADDRESS_PROPERTY),
        ("server_version", SERVER_VERSION_PROPERTY),
    ):
        if server.get(key):
            blessing.set_string_custom_property(name, server[key])
    if images and len(images) > 1:
        for key, name in (
            ("image", SERVER_IMAGE_PROPERTY),
            ("image_digest", SERVER_IMAGE_DIGEST_PROPERTY),
            ("image_id", SERVER_IMAGE_ID_PROPERTY),
        ):
            values = ", ".join(image.get(key) or "unknown" for image in images)
            blessing.set_string_custom_property(name, values)


def _proto(exec_properties: dict[str, Any], key: str, message):
    value = exec_properties.get(key)
    if value:
        proto_utils.json_to_proto(value, message)
    return message


def _baseline_uri(input_dict: dict[str, list[types.Artifact]], model_uri: str) -> str | None:
    for artifact in input_dict.get(BASELINE_KEY) or []:
        # A resolver may hand back the candidate itself as "latest blessed": no baseline.
        if artifact.uri != model_uri:
            return artifact_path(artifact)
    for artifact in input_dict.get(BASELINE_PUSHED_MODEL_KEY) or []:
        pushed = (
            artifact.get_int_custom_property("pushed")
            if artifact.has_custom_property("pushed")
            else 1
        )
        if pushed and artifact.uri != model_uri:
            return artifact_path(artifact)
    return None


class Executor(base_executor.BaseExecutor):
    """Runs the serving canary; a refused model is a successful run with blessed=0."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Serves `model` (beside `baseline`), drives traffic from `examples`, writes `blessing`.

        The blessing directory gets INFRA_BLESSED / INFRA_NOT_BLESSED, report.json,
        report.html, and server.log when the model did not load.

        With the `serving_baseline` parameter the baseline is what serves now (see
        `serving_baseline.find_serving_now`) instead of the `baseline` input.

        Raises:
            SavedModelError: no SavedModel in the model or baseline artifact.
            ServingBaselineError: what serves now cannot be determined.
            CanaryInterrupted: the executor got SIGTERM (the model server was stopped).
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        serving_spec = _proto(exec_properties, SERVING_SPEC_KEY, infra_validator_pb2.ServingSpec())
        validation_spec = _proto(
            exec_properties, VALIDATION_SPEC_KEY, infra_validator_pb2.ValidationSpec()
        )
        request_spec = _proto(exec_properties, REQUEST_SPEC_KEY, infra_validator_pb2.RequestSpec())
        config = CanaryConfig.from_value(exec_properties.get(CANARY_CONFIG_KEY) or None)
        examples = None
        if input_dict.get(EXAMPLES_KEY):
            artifact = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
            examples = read_examples(
                artifact_path(artifact),
                request_spec.split_name or None,
                limit=request_spec.num_examples or config.num_examples,
                split_names=artifact.split_names or None,
            )
        baseline_dir = _baseline_uri(input_dict, model.uri)
        serving_baseline = ServingBaseline.from_value(exec_properties.get(SERVING_BASELINE_KEY))
        serving_now = find_serving_now(serving_baseline) if serving_baseline else None
        if serving_baseline is not None:
            baseline_dir = str(serving_now.directory) if serving_now else None
        work_dir = Path(self._get_tmp_dir()) / "canary"
        try:
            result = run_canary(
                artifact_path(model),
                output_dir=artifact_path(blessing),
                baseline_dir=baseline_dir,
                examples=examples,
                config=config,
                serving_spec=serving_spec,
                validation_spec=validation_spec,
                request_spec=request_spec,
                work_dir=work_dir,
            )
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        write_infra_blessing(blessing, result.blessed)
        add_warmed_model(blessing, result, request_spec)
        record_server(blessing, result.report.get("server"), result.report.get("images"))
        for reason in result.report["verdict"]["reasons"]:
            logger.warning("Canary refused the model: %s", reason)
        if serving_now is not None:
            blessing.set_int_custom_property(BASELINE_VERSION_PROPERTY, serving_now.version)
            blessing.set_string_custom_property(BASELINE_SOURCE_PROPERTY, serving_now.source)
