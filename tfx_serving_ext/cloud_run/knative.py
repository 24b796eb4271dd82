"""Returns a Knative `serving.knative.dev/v1` Service manifest for the model image.

The manifest mirrors what `deploy.py` asks of Cloud Run: the same revision name (under
`spec.template.metadata.name`), the image by digest, `$PORT` 8080, a startup probe on
`/v1/models/<name>`, resources, concurrency, scaling annotations, and the traffic split from
`traffic.canary_split` (the new revision tagged, with its share; the rest to
`config.previous_revision` when given). Apply it with `kubectl apply -f` on any Knative cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tfx_serving_ext.cloud_run import traffic as tr
from tfx_serving_ext.cloud_run.config import CloudRunConfig
from tfx_serving_ext.cloud_run.deploy import CONTAINER_PORT


def knative_service(config: CloudRunConfig, image: str, revision: str) -> dict[str, Any]:
    """Returns the Knative Service manifest (as a dict) for a new revision running `image`."""
    current = (
        [tr.Target(config.previous_revision, 100)]
        if config.previous_revision and config.previous_revision != revision
        else []
    )
    split = tr.canary_split(current, revision, config.tag, config.traffic_percent)
    annotations = {"autoscaling.knative.dev/min-scale": str(config.min_instances)}
    if config.max_instances:
        annotations["autoscaling.knative.dev/max-scale"] = str(config.max_instances)
    container: dict[str, Any] = {
        "image": image,
        "ports": [{"name": "http1", "containerPort": CONTAINER_PORT}],
        "env": [{"name": k, "value": v} for k, v in sorted(config.env.items())],
        "resources": {"limits": {"cpu": config.cpu, "memory": config.memory}},
        # Knative routes only to ready pods; the readiness probe is the startup gate.
        "readinessProbe": {
            "httpGet": {"path": f"/v1/models/{config.model_name}", "port": CONTAINER_PORT},
            "periodSeconds": config.startup_period_s,
            "failureThreshold": config.startup_failure_threshold,
        },
    }
    if config.server_args:
        container["args"] = list(config.server_args)
    if not container["env"]:
        del container["env"]
    spec: dict[str, Any] = {
        "containerConcurrency": config.concurrency,
        "containers": [container],
    }
    if config.service_account:
        spec["serviceAccountName"] = config.service_account
    metadata: dict[str, Any] = {"name": config.service}
    if config.knative_namespace:
        metadata["namespace"] = config.knative_namespace
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "template": {
                "metadata": {"name": revision, "annotations": annotations},
                "spec": spec,
            },
            "traffic": [
                {
                    "revisionName": t.revision,
                    "percent": t.percent,
                    "latestRevision": False,
                    **({"tag": t.tag} if t.tag else {}),
                }
                for t in split
            ],
        },
    }


def write_knative_manifest(
    config: CloudRunConfig, image: str, revision: str, path: str | Path
) -> Path:
    """Returns the path of the YAML manifest written for a new revision running `image`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(knative_service(config, image, revision), sort_keys=False))
    return path
