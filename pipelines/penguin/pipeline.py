r"""The penguin pipeline: one `create_pipeline(...)` shared by every runner.

    CsvExampleGen -> PenguinTrainer -> SignatureValidator --------------------------+
                                    \-> WarmupRequestWriter -> ServingCanary -> ServingPusher
    what serves now (server / volume) -> baseline of SignatureValidator and ServingCanary

The baseline is, by default, what serves now: the version the model server reports AVAILABLE
(with `server_address`) or the newest complete version on the serving volume. No resolver node,
so the same pipeline runs under LocalDagRunner, the tfx CLI, Vertex and open-source KFP. The MLMD
resolvers remain an option (`baseline="latest_pushed"` or `"latest_blessed"`).

The pusher publishes to a serving volume (TF Serving's model_base_path) or, with
`push_target="cloud_run"`, builds an image and deploys a tagged canary revision on Cloud Run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tfx.components import CsvExampleGen
from tfx.dsl.components.base.base_node import BaseNode
from tfx.orchestration import metadata, pipeline
from tfx.proto import infra_validator_pb2
from tfx.types import Channel

from pipelines.penguin import model as penguin_model
from pipelines.penguin.trainer import PenguinTrainer
from tfx_serving_ext.components.baseline import baseline_resolver
from tfx_serving_ext.components.serving_canary import ServingCanary
from tfx_serving_ext.components.serving_pusher import ServingPusher
from tfx_serving_ext.components.signature_validator import SignatureValidator
from tfx_serving_ext.components.warmup_request_writer import WarmupRequestWriter

PIPELINE_NAME = "penguin-serving"
SERVING_BASELINE = "serving"  # the baseline is what serves now (no resolver)
NO_BASELINE = "none"  # compare with nothing: the contract and absolute thresholds only
BASELINES = (SERVING_BASELINE, "latest_pushed", "latest_blessed", NO_BASELINE)
MODEL_NAME = "penguin"
# Beam 2.77's DirectRunner first tries the Prism runner, which downloads a binary at run time
# (and falls back when it cannot); FnApiRunner is the in-process runner without that detour.
DEFAULT_BEAM_ARGS = ["--runner=FnApiRunner", "--direct_num_workers=1"]

# What the penguin model's clients rely on; the validator refuses a model that breaks it.
PENGUIN_CONTRACT = {
    "serving_default": {
        "method": "predict",
        "inputs": {"examples": {"dtype": "string", "shape": [-1]}},
        "outputs": {penguin_model.OUTPUT_KEY: {"dtype": "float32", "shape": [-1, 3]}},
    },
    penguin_model.FEATURES_SIGNATURE: {
        "method": "predict",
        "inputs": {key: {"dtype": "float32", "shape": [-1]} for key in penguin_model.FEATURE_KEYS},
        "outputs": {penguin_model.OUTPUT_KEY: {"dtype": "float32", "shape": [-1, 3]}},
    },
}


# The penguin model answers in about a millisecond, where a p99 ratio is mostly scheduling noise
# on a busy machine: a latency regression must also cost 10 ms before it refuses the model.
# Errors and top-class agreement keep the defaults: no failed request, and at least half of the
# answers agreeing with the baseline (a broken preprocessing step disagrees wholesale).
PENGUIN_CANARY_THRESHOLDS: dict[str, float | None] = {"ratio_slack_ms": 10.0}


def create_pipeline(
    *,
    pipeline_root: str,
    data_root: str,
    serving_model_dir: str,
    metadata_path: str | None = None,
    pipeline_name: str = PIPELINE_NAME,
    epochs: int = 40,
    seed: int = 0,
    server_address: str | None = None,
    keep_versions: int = 0,
    baseline: str = "serving",
    push_target: str = "serving_volume",
    cloud_run: dict[str, Any] | None = None,
    canary_requests: int = 200,
    canary_backend: str = "embedded",
    canary_serving_spec: infra_validator_pb2.ServingSpec | None = None,
    canary_thresholds: dict[str, float | None] | None = None,
    beam_pipeline_args: list[str] | None = None,
    drop_features: str = "",
    before_canary: Callable[[Channel], tuple[list[BaseNode], Channel]] | None = None,
) -> pipeline.Pipeline:
    """Returns the penguin pipeline.

    Args:
        pipeline_root: where the pipeline's artifacts are written.
        data_root: a directory holding the penguins CSV file(s).
        serving_model_dir: the serving volume for this model (TF Serving's model_base_path).
        metadata_path: SQLite MLMD file for local runs; None when the orchestrator provides MLMD.
        pipeline_name: the pipeline's name in MLMD.
        epochs, seed: trainer settings; a different seed gives a retrained model.
        server_address: gRPC address of the TF Serving that polls `serving_model_dir`; the
            pusher then waits until it serves the new version (and rolls back if it cannot).
        keep_versions: versions kept on the volume (0 keeps all).
        baseline: how to find the model serving now: "serving" (ask the server at
            `server_address`, else read the serving volume; no resolver), or an MLMD resolver:
            "latest_pushed" (lineage of the last push) or "latest_blessed" (TFX's
            LatestBlessedModelStrategy, the one KubeflowV2DagRunner compiles; Vertex only);
            "none": no baseline (the contract and absolute thresholds only).
        push_target: "serving_volume" or "cloud_run" (then `cloud_run` holds a CloudRunConfig
            as a dict).
        canary_requests: requests the canary sends to the candidate and to the baseline.
        canary_backend: where the canary's model server runs ("embedded", "docker",
            "kubernetes", "auto": what `canary_serving_spec` names, else embedded).
        canary_serving_spec: InfraValidator's ServingSpec for the canary (image tag, platform).
        canary_thresholds: CanaryThresholds fields overriding PENGUIN_CANARY_THRESHOLDS.
        beam_pipeline_args: arguments for the Beam pipelines of Beam-based components.
        drop_features: test-only: comma-separated features the trainer leaves out of the
            `predict_features` signature (a contract-breaking retrain the validator refuses).
        before_canary: a step of your own between the warmup writer and the canary: called
            with the warmed model's channel, returns the components to add and the model
            channel the canary and the pusher take instead.
    """
    example_gen = CsvExampleGen(input_base=os.fspath(data_root))
    examples = example_gen.outputs["examples"]
    trainer = PenguinTrainer(
        examples=examples,
        epochs=epochs,
        seed=seed,
        **({"drop_features": drop_features} if drop_features else {}),
    )
    resolvers: list[BaseNode] = []
    if baseline == SERVING_BASELINE:
        if push_target != "serving_volume":
            raise ValueError(
                f"baseline={SERVING_BASELINE!r} reads the serving volume; with push_target="
                f"{push_target!r} choose an MLMD resolver (latest_pushed or latest_blessed)"
            )
        serving_baseline = {
            "base_directory": os.fspath(serving_model_dir),
            "model_name": MODEL_NAME,
            "server_address": server_address or "",
        }
        validator_baseline = canary_baseline = {"serving_baseline": serving_baseline}
    elif baseline == NO_BASELINE:
        validator_baseline = canary_baseline = {}
    else:
        serving_now = baseline_resolver(baseline)
        resolvers.append(serving_now)
        validator_baseline = {"baseline_model": serving_now.outputs["model"]}
        canary_baseline = {"baseline": serving_now.outputs["model"]}
    validator = SignatureValidator(
        model=trainer.outputs["model"],
        examples=examples,
        contract=PENGUIN_CONTRACT,
        **validator_baseline,
    )
    warmup = WarmupRequestWriter(
        model=trainer.outputs["model"], examples=examples, num_examples=50, model_name=MODEL_NAME
    )
    warmed_model = warmup.outputs["warmed_model"]
    extra_steps: list[BaseNode] = []
    if before_canary is not None:
        extra_steps, warmed_model = before_canary(warmed_model)
    canary = ServingCanary(
        model=warmed_model,
        examples=examples,
        serving_spec=canary_serving_spec,
        config={
            "num_requests": canary_requests,
            "concurrency": 4,
            "backend": canary_backend,
            "thresholds": {**PENGUIN_CANARY_THRESHOLDS, **(canary_thresholds or {})},
        },
        **canary_baseline,
    )
    if push_target == "serving_volume":
        push_destination: dict[str, Any] = {
            "base_directory": os.fspath(serving_model_dir),
            "model_name": MODEL_NAME,
            "keep_versions": keep_versions,
        }
        if server_address:
            push_destination.update(server_address=server_address, verify_timeout_seconds=120)
    elif push_target == "cloud_run":
        push_destination = dict(cloud_run or {})
    else:
        raise ValueError(
            f"push_target must be 'serving_volume' or 'cloud_run', not {push_target!r}"
        )
    pusher = ServingPusher(
        model=warmed_model,
        model_blessing=validator.outputs["blessing"],
        infra_blessing=canary.outputs["blessing"],
        destination=push_target,
        push_destination=push_destination,
    )
    return pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=os.fspath(pipeline_root),
        components=[
            example_gen,
            trainer,
            *resolvers,
            validator,
            warmup,
            *extra_steps,
            canary,
            pusher,
        ],
        metadata_connection_config=(
            metadata.sqlite_metadata_connection_config(os.fspath(metadata_path))
            if metadata_path
            else None
        ),
        beam_pipeline_args=beam_pipeline_args or DEFAULT_BEAM_ARGS,
        enable_cache=False,
    )
