r"""The penguin pipeline written as TFX's template writes it, with this package's components.

    CsvExampleGen -> Trainer (run_fn module file) -> Evaluator (TFMA) -------------+
                       |  latest blessed model (Resolver): baseline of the three  |
                       +-> SignatureValidator ------------------------------------+
                       +-> WarmupRequestWriter -> ServingCanary ------------> ServingPusher
                                                               \-> stock Pusher (optional)

Our ServingPusher pushes only when the Evaluator *and* the SignatureValidator bless the model
(one `model_blessing` channel, the union of both; for KubeflowV2DagRunner, which compiles no
union, the AllBlessed component's blessing) and the ServingCanary blesses the warmed model.
With `stock_pusher_dir`, TFX's own Pusher is wired to our blessings too (they are standard
ModelBlessing / InfraBlessing artifacts) and pushes the same warmed model there.

Runs on TFX 1.16 (Python 3.10) and on any TFX 1.x with TensorFlow Model Analysis installed;
see tests_tfx116/ for the run that pushes twice and hot-swaps the embedded model server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.types import channel_utils

from pipelines.penguin_tfx.all_blessed import all_blessed
from tfx_serving_ext import ServingCanary, ServingPusher, SignatureValidator, WarmupRequestWriter

PIPELINE_NAME = "penguin-tfx"
MODEL_NAME = "penguin"
MODULE_FILE = str(Path(__file__).with_name("penguin_trainer.py"))
DATA_ROOT = str(Path(__file__).resolve().parents[1] / "penguin" / "data")
# In-process Beam without the Prism runner (newer Beam's DirectRunner downloads it at run time).
BEAM_ARGS = ["--runner=FnApiRunner", "--direct_num_workers=1"]

# What the model's clients rely on (see penguin_trainer._serving_signatures).
CONTRACT = {
    "serving_default": {
        "method": "predict",
        "inputs": {"examples": {"dtype": "string", "shape": [-1]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 3]}},
    }
}


def eval_config(min_accuracy: float, max_accuracy_drop: float) -> tfma.EvalConfig:
    """Returns TFMA's config: accuracy at least `min_accuracy`, and at most `max_accuracy_drop`
    below the baseline (the latest blessed model)."""
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_accuracy}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_accuracy_drop},
            ),
        ),
    )
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(label_key="species", signature_name="serving_default")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[accuracy])],
    )


def create_pipeline(
    *,
    pipeline_root: str,
    serving_model_dir: str,
    metadata_path: str | None,
    data_root: str = DATA_ROOT,
    module_file: str = MODULE_FILE,
    pipeline_name: str = PIPELINE_NAME,
    train_steps: int = 300,
    seed: int = 0,
    min_accuracy: float = 0.6,
    max_accuracy_drop: float = 0.1,
    server_address: str | None = None,
    canary_requests: int = 50,
    canary_thresholds: dict[str, float | None] | None = None,
    stock_pusher_dir: str | None = None,
    beam_pipeline_args: list[str] | None = None,
    blessing_gate: bool = False,
) -> tfx.dsl.Pipeline:
    """Returns the pipeline; run it with `tfx.orchestration.LocalDagRunner().run(...)`.

    Args:
        pipeline_root: where the pipeline's artifacts are written.
        serving_model_dir: the serving volume (TF Serving's model_base_path for `penguin`).
        metadata_path: the SQLite MLMD file (None when compiling for KFP: the platform's MLMD).
        data_root: a directory holding the penguins CSV.
        module_file: the Trainer's module file (its `run_fn`).
        train_steps, seed: the Trainer's steps and random seed (another seed: a retrained model).
        min_accuracy, max_accuracy_drop: the Evaluator's thresholds.
        server_address: gRPC address of the TF Serving that polls `serving_model_dir`; the
            pusher then waits until it serves the new version.
        canary_requests: requests the canary sends to the candidate and to the baseline.
        canary_thresholds: CanaryThresholds fields overriding the defaults (None switches one
            off, e.g. {"max_p99_ratio": None}).
        stock_pusher_dir: if set, TFX's Pusher also pushes there, gated by our blessings.
        beam_pipeline_args: Beam arguments (default: in-process FnApiRunner).
        blessing_gate: join the Evaluator's and the validator's blessings in the AllBlessed
            component instead of a union channel (KubeflowV2DagRunner compiles no unions).
    """
    example_gen = tfx.components.CsvExampleGen(input_base=data_root)
    examples = example_gen.outputs["examples"]
    trainer = tfx.components.Trainer(
        module_file=module_file,
        examples=examples,
        train_args=tfx.proto.TrainArgs(num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=5),
        custom_config={"seed": seed},
    )
    model = trainer.outputs["model"]
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    baseline = latest_blessed.outputs["model"]
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=model,
        baseline_model=baseline,
        eval_config=eval_config(min_accuracy, max_accuracy_drop),
    )
    validator = SignatureValidator(
        model=model, examples=examples, baseline_model=baseline, contract=CONTRACT
    )
    warmup = WarmupRequestWriter(
        model=model, examples=examples, num_examples=20, model_name=MODEL_NAME
    )
    warmed_model = warmup.outputs["warmed_model"]
    canary = ServingCanary(
        model=warmed_model,
        examples=examples,
        baseline=baseline,
        config={
            "num_requests": canary_requests,
            "concurrency": 2,
            "backend": "embedded",
            # A ~1 ms model on a busy machine: latency must also regress by 10 ms to refuse.
            "thresholds": {"ratio_slack_ms": 10.0, **(canary_thresholds or {})},
        },
    )
    push_destination: dict[str, Any] = {
        "base_directory": serving_model_dir,
        "model_name": MODEL_NAME,
    }
    if server_address:
        push_destination.update(server_address=server_address, verify_timeout_seconds=120)
    gate = None
    if blessing_gate:
        gate = all_blessed(
            evaluator_blessing=evaluator.outputs["blessing"],
            validator_blessing=validator.outputs["blessing"],
        ).with_id("AllBlessed")
        model_blessing = gate.outputs["blessing"]
    else:
        model_blessing = channel_utils.union(
            [evaluator.outputs["blessing"], validator.outputs["blessing"]]
        )
    pusher = ServingPusher(
        model=warmed_model,
        model_blessing=model_blessing,
        infra_blessing=canary.outputs["blessing"],
        push_destination=push_destination,
    )
    components = [
        example_gen,
        trainer,
        latest_blessed,
        evaluator,
        validator,
        warmup,
        canary,
        *([gate] if gate else []),
        pusher,
    ]
    if stock_pusher_dir:
        components.append(
            tfx.components.Pusher(
                model=warmed_model,
                model_blessing=validator.outputs["blessing"],
                infra_blessing=canary.outputs["blessing"],
                push_destination=tfx.proto.PushDestination(
                    filesystem=tfx.proto.PushDestination.Filesystem(base_directory=stock_pusher_dir)
                ),
            ).with_id("stock_pusher")
        )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.fspath(metadata_path)
        )
        if metadata_path
        else None,
        beam_pipeline_args=beam_pipeline_args or BEAM_ARGS,
        enable_cache=False,
    )
