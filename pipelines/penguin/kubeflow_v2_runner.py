"""Compiles the penguin pipeline to a Kubeflow Pipelines v2 / Vertex Pipelines JSON.

    python -m pipelines.penguin.kubeflow_v2_runner --output penguin-serving.json \
        --image REGISTRY/tfx-serving-ext-pipeline:TAG --pipeline-root gs://BUCKET/root

No cluster is needed to compile. The image is built from `pipelines/penguin/Dockerfile` (this
package installed on the TFX base image). On KFP:
- the canary runs TF Serving (`tensorflow/serving:<tag>`) in a pod beside its executor pod, as
  TFX InfraValidator's KubernetesRunner does (the ServingSpec's `kubernetes` platform);
- the baseline is the latest model the SignatureValidator blessed (LatestBlessedModelStrategy: the
  only model resolver KubeflowV2DagRunner compiles besides "latest artifact");
- the serving volume is a PersistentVolumeClaim mounted at `--serving-volume` in the pipeline's
  pods and at TF Serving's model_base_path in the serving Deployment; mounting it into the pods is
  the cluster's job (a KFP pod default or a mutating webhook), as TFX's runner cannot add volumes.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pipelines.penguin.pipeline import PIPELINE_NAME, create_pipeline

DEFAULT_IMAGE = "tfx-serving-ext-pipeline:latest"
TF_SERVING_TAG = "2.19.1"  # the TF Serving release matching tensorflow-serving-api


def compile_pipeline(
    output: str | os.PathLike,
    *,
    image: str = DEFAULT_IMAGE,
    pipeline_root: str = "gs://YOUR-BUCKET/tfx-serving-ext",
    data_root: str = "/opt/tfx-serving-ext/pipelines/penguin/data",
    serving_volume: str = "/serving",
    cloud_run: dict | None = None,
) -> Path:
    """Writes the KFP v2 pipeline JSON to `output`; returns its path.

    With `cloud_run` (CloudRunConfig fields), the pusher deploys to Cloud Run instead of
    publishing to the serving volume.
    """
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
    from tfx.proto import infra_validator_pb2

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
            baseline="latest_blessed",
            push_target="cloud_run" if cloud_run else "serving_volume",
            cloud_run=cloud_run,
            canary_backend="kubernetes",
            canary_serving_spec=infra_validator_pb2.ServingSpec(
                model_name="penguin",
                tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[TF_SERVING_TAG]),
                kubernetes=infra_validator_pb2.KubernetesConfig(),
            ),
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
    parser.add_argument(
        "--cloud-run-config",
        help="JSON file of CloudRunConfig fields: push to Cloud Run instead of the serving volume",
    )
    args = parser.parse_args(argv)
    path = compile_pipeline(
        args.output,
        image=args.image,
        pipeline_root=args.pipeline_root,
        data_root=args.data_root,
        serving_volume=args.serving_volume,
        cloud_run=json.loads(Path(args.cloud_run_config).read_text())
        if args.cloud_run_config
        else None,
    )
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
