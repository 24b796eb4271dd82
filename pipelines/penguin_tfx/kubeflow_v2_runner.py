"""Compiles the template-style penguin pipeline with `tfx.orchestration.experimental.
KubeflowV2DagRunner` to a Vertex Pipelines PipelineJob JSON (schema 2.1).

    python -m pipelines.penguin_tfx.kubeflow_v2_runner --output penguin-tfx.json \
        --image REGION-docker.pkg.dev/PROJECT/REPO/IMAGE:TAG --pipeline-root gs://BUCKET/root \
        --serving-volume /serving

The image is a TFX image with this package installed. The baseline of the Evaluator, the
validator and the canary is TFX's LatestBlessedModelStrategy, which compiles to resolver tasks:
Vertex runs them, open-source Kubeflow Pipelines does not (`pipelines/penguin/kubeflow_v2_runner`
is the resolver-free variant). The Evaluator's and the validator's blessings reach the pusher
through the AllBlessed component (the runner compiles no union channels).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tfx import v1 as tfx

from pipelines.penguin_tfx.pipeline import DATA_ROOT, MODEL_NAME, PIPELINE_NAME, create_pipeline

DEFAULT_IMAGE = "tfx-serving-ext-pipeline:latest"


def compile_pipeline(
    output: str | os.PathLike,
    *,
    image: str = DEFAULT_IMAGE,
    pipeline_root: str,
    serving_volume: str = "/serving",
    data_root: str = DATA_ROOT,
    **pipeline_args: Any,
) -> Path:
    """Writes the PipelineJob JSON to `output`; returns its path.

    Args:
        output: the JSON file to write.
        image: the image every task runs in.
        pipeline_root, data_root, serving_volume: where artifacts, the CSV and the serving
            volume are, as the tasks see them.
        **pipeline_args: further `create_pipeline` arguments (train_steps, seed,
            server_address, canary_requests, ...).
    """
    output = Path(output).absolute()
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True
        ),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    runner.run(
        create_pipeline(
            pipeline_root=pipeline_root,
            serving_model_dir=f"{serving_volume.rstrip('/')}/{MODEL_NAME}",
            metadata_path=None,
            data_root=data_root,
            blessing_gate=True,
            **pipeline_args,
        )
    )
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=f"{PIPELINE_NAME}.json")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--pipeline-root", required=True)
    parser.add_argument("--data-root", default=DATA_ROOT)
    parser.add_argument("--serving-volume", default="/serving")
    parser.add_argument(
        "--server-address", help="gRPC host:port of the TF Serving polling the serving volume"
    )
    args = parser.parse_args(argv)
    path = compile_pipeline(
        args.output,
        image=args.image,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_volume=args.serving_volume,
        server_address=args.server_address,
    )
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
