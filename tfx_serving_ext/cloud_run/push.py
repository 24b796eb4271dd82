"""Returns the outcome of pushing a SavedModel to Cloud Run: image, revision, URLs.

This is the one function the ServingPusher's `cloud_run` destination and the CLI call:
build the model image on the base image and push it (no Docker daemon), then, by
`config.mode`, deploy a tagged canary revision through the Cloud Run Admin API, write a
Knative Service manifest, or stop after the image.

Usage:
    result = push_to_cloud_run("/pipeline/Trainer/model/7/Format-Serving", config)
    result.image_digest, result.revision, result.service_url, result.tag_url
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from tfx_serving_ext.cloud_run import config as cfg
from tfx_serving_ext.cloud_run.deploy import CloudRunDeployer, revision_name
from tfx_serving_ext.cloud_run.image_push import ClientFactory, build_and_push_image
from tfx_serving_ext.cloud_run.knative import write_knative_manifest
from tfx_serving_ext.cloud_run.registry import RegistryClient
from tfx_serving_ext.protocol.saved_model import find_serving_model_dir

logger = logging.getLogger(__name__)


@dataclass
class CloudRunPushResult:
    """What a Cloud Run push produced."""

    image: str  # registry/repository@sha256:...
    image_digest: str
    model_version: int
    revision: str = ""
    service_url: str = ""
    tag_url: str = ""
    knative_manifest: str = ""
    traffic: list[dict[str, Any]] = field(default_factory=list)


def push_to_cloud_run(
    model_dir: str | os.PathLike,
    config: cfg.CloudRunConfig,
    *,
    source_uri: str | None = None,
    deployer: CloudRunDeployer | None = None,
    registry_client_factory: ClientFactory = RegistryClient,
) -> CloudRunPushResult:
    """Returns the pushed image and, per `config.mode`, the deployed revision or manifest.

    Args:
        model_dir: a SavedModel directory or a Model artifact URI (TFX Trainer layout).
        config: where and how to push and deploy.
        source_uri: recorded as the image's model-source label (default: `model_dir`).
        deployer: the Cloud Run deployer (default: from `config`, Google default credentials).
        registry_client_factory: returns a registry client for a host.

    Raises:
        SavedModelError: no SavedModel under `model_dir`.
        ImageBuildError, RegistryError: the image could not be built or pushed.
        DeployError, DeployTimeout: Cloud Run refused, failed, or did not finish in time.
    """
    saved_model_dir = find_serving_model_dir(model_dir)
    version = config.model_version if config.model_version is not None else int(time.time())
    image = build_and_push_image(
        saved_model_dir,
        target=config.image_repository,
        model_name=config.model_name,
        model_version=version,
        base_image=config.base_image,
        source_uri=source_uri or str(model_dir),
        client_factory=registry_client_factory,
    )
    result = CloudRunPushResult(image.reference, image.digest, version)
    if config.mode == cfg.MODE_IMAGE_ONLY:
        return result
    result.revision = revision_name(config.service, version, image.digest)
    if config.mode == cfg.MODE_KNATIVE:
        path = write_knative_manifest(
            config, image.reference, result.revision, config.knative_manifest_path
        )
        result.knative_manifest = str(path)
        logger.info("Wrote Knative Service manifest %s", path)
        return result
    deployer = deployer or CloudRunDeployer.from_config(config)
    deployed = deployer.deploy_revision(config, image.reference, result.revision)
    result.service_url, result.tag_url = deployed.service_url, deployed.tag_url
    result.traffic = deployed.traffic_dicts()
    logger.info(
        "Deployed %s (%d%% of traffic) at %s",
        result.revision,
        config.traffic_percent,
        result.tag_url or result.service_url,
    )
    return result
