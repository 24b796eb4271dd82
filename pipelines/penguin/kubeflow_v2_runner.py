"""Compiles the penguin pipeline to a Kubeflow Pipelines v2 / Vertex Pipelines JSON.

    python -m pipelines.penguin.kubeflow_v2_runner --output penguin-serving.json \
        --image REGISTRY/tfx-serving-ext-pipeline:TAG --pipeline-root gs://BUCKET/root

No cluster is needed to compile. The image is built from `pipelines/penguin/Dockerfile` (this
package installed on the TFX base image). On Kubernetes the serving volume is a PVC that both the
pusher's pod and TF Serving mount (`--serving-volume` is its mount path inside the pipeline pods).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.penguin.pipeline import PIPELINE_NAME, create_pipeline

DEFAULT_IMAGE = "tfx-serving-ext-pipeline:latest"


def compile_pipeline(
    output: str | os.PathLike,
    *,
    image: str = DEFAULT_IMAGE,
    pipeline_root: str = "gs://YOUR-BUCKET/tfx-serving-ext",
    data_root: str = "/opt/tfx-serving-ext/pipelines/penguin/data",
    serving_volume: str = "/serving",
) -> Path:
    """Writes the KFP v2 pipeline JSON to `output`; returns its path."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    output = Path(output).absolute()
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    runner.run(
        create_pipeline(
            pipeline_root=pipeline_root,
            data_root=data_root,
            serving_model_dir=f"{serving_volume.rstrip('/')}/penguin",
            metadata_path=None,
            pipeline_name=PIPELINE_NAME,
        )
    )
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=f"{PIPELINE_NAME}.json")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--pipeline-root", default="gs://YOUR-BUCKET/tfx-serving-ext")
    parser.add_argument("--data-root", default="/opt/tfx-serving-ext/pipelines/penguin/data")
    parser.add_argument("--serving-volume", default="/serving")
    args = parser.parse_args(argv)
    path = compile_pipeline(
        args.output,
        image=args.image,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_volume=args.serving_volume,
    )
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
