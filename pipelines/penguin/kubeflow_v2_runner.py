"""Compiles the penguin pipeline to a Vertex Pipelines / Kubeflow Pipelines v2 PipelineJob JSON.

    # Vertex Pipelines
    python -m pipelines.penguin.kubeflow_v2_runner --platform vertex --output penguin-serving.json \
        --image REGION-docker.pkg.dev/PROJECT/REPO/tfx-serving-ext-pipeline:TAG \
        --pipeline-root gs://BUCKET/root
    # open-source Kubeflow Pipelines v2
    python -m pipelines.penguin.kubeflow_v2_runner --platform kfp --output penguin-serving.json \
        --image REGISTRY/tfx-serving-ext-pipeline:TAG --pipeline-root minio://mlpipeline/v2/artifacts

No cluster is needed to compile; the spec is schema 2.1. The image is built from
`pipelines/penguin/Dockerfile` (this package installed on the TFX base image).
- The baseline is what serves now (`--baseline serving`, the default): the version the TF Serving
  at `--server-address` reports AVAILABLE, or without an address the newest complete version on
  the serving volume. No resolver node, so the same spec runs on Vertex and on open-source KFP
  (whose compiler has no resolver executors). `--baseline latest_blessed` compiles TFX's
  LatestBlessedModelStrategy instead: Vertex only.
- The canary's model server (`--canary-backend`): on `kfp` by default TF Serving in a pod beside
  the executor pod (`kubernetes`, InfraValidator's KubernetesRunner semantics); on `vertex`, which
  has no Kubernetes API, by default the embedded TF-Serving-compatible server in the executor.
- The serving volume is a filesystem mounted at `--serving-volume` in the pipeline's pods and at
  TF Serving's model_base_path (on KFP a PersistentVolumeClaim, mounted by a KFP pod default or a
  mutating webhook, as TFX's runner cannot add volumes; on Vertex a Filestore/NFS mount).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from pipelines.penguin.pipeline import PIPELINE_NAME, SERVING_BASELINE, create_pipeline

DEFAULT_IMAGE = "tfx-serving-ext-pipeline:latest"
TF_SERVING_TAG = "2.19.1"  # the TF Serving release matching tensorflow-serving-api
PLATFORMS = ("vertex", "kfp")
# What fits each platform: open-source KFP runs in a cluster whose API the executor can use;
# a Vertex task has no Kubernetes API (and no container engine), so the canary serves in-process.
DEFAULT_CANARY_BACKEND = {"vertex": "embedded", "kfp": "kubernetes"}
CANARY_BACKENDS = ("embedded", "embedded-subprocess", "kubernetes", "endpoint")
BASELINES = (SERVING_BASELINE, "latest_blessed", "none")


def default_baseline(platform: str, cloud_run: dict | None) -> str:
    """Returns the default baseline: what serves now; for Cloud Run the latest blessed (Vertex)."""
    if not cloud_run:
        return SERVING_BASELINE
    return "latest_blessed" if platform == "vertex" else "none"


def compile_pipeline(
    output: str | os.PathLike,
    *,
    platform: str = "vertex",
    image: str = DEFAULT_IMAGE,
    pipeline_root: str = "gs://YOUR-BUCKET/tfx-serving-ext",
    data_root: str = "/opt/tfx-serving-ext/pipelines/penguin/data",
    serving_volume: str = "/serving",
    server_address: str | None = None,
    baseline: str | None = None,
    canary_backend: str | None = None,
    cloud_run: dict | None = None,
    **pipeline_args: Any,
) -> Path:
    """Writes the PipelineJob JSON (schema 2.1) to `output`; returns its path.

    Args:
        output: the JSON file to write.
        platform: "vertex" or "kfp" (open-source Kubeflow Pipelines v2): picks the defaults of
            `canary_backend` and `baseline`, and refuses what the platform cannot run.
        image: the pipeline image (pipelines/penguin/Dockerfile).
        pipeline_root, data_root, serving_volume: where artifacts, the CSV and the serving
            volume are, as the pipeline's pods see them.
        server_address: gRPC address of the TF Serving polling the volume: the pusher verifies
            there and the baseline is what it serves.
        baseline: "serving" (default), "latest_blessed" (Vertex only) or "none".
        canary_backend: where the canary's model server runs (default per platform).
        cloud_run: CloudRunConfig fields: the pusher deploys to Cloud Run instead of the volume.
        **pipeline_args: further `create_pipeline` arguments (epochs, canary_requests, ...).

    Raises:
        ValueError: an unknown platform, backend or baseline, or a resolver for open-source KFP.
    """
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
    from tfx.proto import infra_validator_pb2

    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, not {platform!r}")
    canary_backend = canary_backend or DEFAULT_CANARY_BACKEND[platform]
    if canary_backend not in CANARY_BACKENDS:
        raise ValueError(f"canary backend must be one of {CANARY_BACKENDS}, not {canary_backend!r}")
    if canary_backend == "kubernetes" and platform == "vertex":
        raise ValueError(
            "Vertex Pipelines gives a task no Kubernetes API: the kubernetes canary backend "
            "cannot run there; use embedded (the default) or endpoint"
        )
    baseline = baseline or default_baseline(platform, cloud_run)
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, not {baseline!r}")
    if baseline == "latest_blessed" and platform == "kfp":
        raise ValueError(
            "open-source Kubeflow Pipelines does not run resolver executors ('resolver executors "
            "not implemented'): use --baseline serving (what serves now) or none"
        )
    serving_spec = infra_validator_pb2.ServingSpec(
        model_name="penguin",
        tensorflow_serving=infra_validator_pb2.TensorFlowServing(tags=[TF_SERVING_TAG]),
    )
    if canary_backend == "kubernetes":
        serving_spec.kubernetes.SetInParent()

    output = Path(output).absolute()
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True
        ),
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
            server_address=server_address,
            baseline=baseline,
            push_target="cloud_run" if cloud_run else "serving_volume",
            cloud_run=cloud_run,
            canary_backend=canary_backend,
            canary_serving_spec=serving_spec,
            **pipeline_args,
        )
    )
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", choices=PLATFORMS, default="vertex")
    parser.add_argument("--output", default=f"{PIPELINE_NAME}.json")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--pipeline-root", default="gs://YOUR-BUCKET/tfx-serving-ext")
    parser.add_argument("--data-root", default="/opt/tfx-serving-ext/pipelines/penguin/data")
    parser.add_argument("--serving-volume", default="/serving")
    parser.add_argument(
        "--server-address",
        help="gRPC host:port of the TF Serving polling the volume (push verification, baseline)",
    )
    parser.add_argument(
        "--baseline",
        choices=BASELINES,
        help="what the candidate is compared with (default: serving, what serves now)",
    )
    parser.add_argument(
        "--canary-backend",
        choices=CANARY_BACKENDS,
        help="where the canary's model server runs (default: kubernetes on kfp, embedded on "
        "vertex)",
    )
    parser.add_argument(
        "--cloud-run-config",
        help="JSON file of CloudRunConfig fields: push to Cloud Run instead of the serving volume",
    )
    args = parser.parse_args(argv)
    try:
        path = compile_pipeline(
            args.output,
            platform=args.platform,
            image=args.image,
            pipeline_root=args.pipeline_root,
            data_root=args.data_root,
            serving_volume=args.serving_volume,
            server_address=args.server_address,
            baseline=args.baseline,
            canary_backend=args.canary_backend,
            cloud_run=json.loads(Path(args.cloud_run_config).read_text())
            if args.cloud_run_config
            else None,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
