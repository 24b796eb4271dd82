"""The penguin pipeline: one `create_pipeline(...)` shared by every runner.

CsvExampleGen -> PenguinTrainer -> push to a serving directory that TF Serving polls.
"""

from __future__ import annotations

import os

from tfx.components import CsvExampleGen, Pusher
from tfx.orchestration import metadata, pipeline
from tfx.proto import pusher_pb2

from pipelines.penguin.trainer import PenguinTrainer

PIPELINE_NAME = "penguin-serving"


def create_pipeline(
    *,
    pipeline_root: str,
    data_root: str,
    serving_model_dir: str,
    metadata_path: str | None = None,
    pipeline_name: str = PIPELINE_NAME,
    epochs: int = 40,
    seed: int = 0,
    beam_pipeline_args: list[str] | None = None,
    validate_signatures: bool = False,
    signature_contract: dict | None = None,
    warmup_examples: int = 0,
) -> pipeline.Pipeline:
    """Returns the penguin pipeline.

    Args:
        pipeline_root: where the pipeline's artifacts are written.
        data_root: a directory holding the penguins CSV file(s).
        serving_model_dir: the serving volume for this model (TF Serving's model_base_path).
        metadata_path: SQLite MLMD file for local runs; None when the orchestrator provides MLMD.
        pipeline_name: the pipeline's name in MLMD.
        epochs, seed: trainer settings; a different seed gives a retrained model.
        beam_pipeline_args: arguments for the Beam pipelines of Beam-based components.
        validate_signatures: insert a SignatureValidator whose blessing the Pusher requires.
        signature_contract: the contract the SignatureValidator checks (a ServingContract dict).
        warmup_examples: when > 0, insert a WarmupRequestWriter sampling that many examples;
            the Pusher then pushes its warmed-up model.
    """
    example_gen = CsvExampleGen(input_base=os.fspath(data_root))
    trainer = PenguinTrainer(examples=example_gen.outputs["examples"], epochs=epochs, seed=seed)
    serving_components, model_blessing, pushed_model = [], None, trainer.outputs["model"]
    if validate_signatures:
        from tfx_serving_ext.components import SignatureValidator

        validator = SignatureValidator(
            model=trainer.outputs["model"],
            examples=example_gen.outputs["examples"],
            contract=signature_contract,
        )
        serving_components.append(validator)
        model_blessing = validator.outputs["blessing"]
    if warmup_examples > 0:
        from tfx_serving_ext.components import WarmupRequestWriter

        warmup = WarmupRequestWriter(
            model=trainer.outputs["model"],
            examples=example_gen.outputs["examples"],
            num_examples=warmup_examples,
        )
        serving_components.append(warmup)
        pushed_model = warmup.outputs["warmed_model"]
    pusher = Pusher(
        model=pushed_model,
        model_blessing=model_blessing,
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=os.fspath(serving_model_dir)
            )
        ),
    )
    return pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=os.fspath(pipeline_root),
        components=[example_gen, trainer, *serving_components, pusher],
        metadata_connection_config=(
            metadata.sqlite_metadata_connection_config(os.fspath(metadata_path))
            if metadata_path
            else None
        ),
        beam_pipeline_args=beam_pipeline_args or ["--direct_num_workers=1"],
        enable_cache=False,
    )
