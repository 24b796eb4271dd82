"""Returns the settings of a Cloud Run push parsed from JSON: `CloudRunConfig`.

Usage:
    config = CloudRunConfig(
        image_repository="us-central1-docker.pkg.dev/my-project/models/penguin",
        project="my-project",
        region="us-central1",
        service="penguin",
        model_name="penguin",
        traffic_percent=10,  # canary: 10% of requests; 0 = reachable only at the tag URL
    )
    CloudRunConfig.from_json(config.to_json()) == config
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfx_serving_ext.config_fields import dataclass_from_mapping

DEFAULT_BASE_IMAGE = "tensorflow/serving:2.19.1"

MODE_CLOUD_RUN = "cloud_run"  # deploy through the Cloud Run Admin API
MODE_KNATIVE = "knative"  # write a serving.knative.dev/v1 Service manifest instead
MODE_IMAGE_ONLY = "image_only"  # build and push the image, deploy nothing
MODES = (MODE_CLOUD_RUN, MODE_KNATIVE, MODE_IMAGE_ONLY)

_SERVICE_RE = re.compile(r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$")
_TAG_RE = re.compile(r"^[a-z]([-a-z0-9]{0,45}[a-z0-9])?$")


class CloudRunConfigError(ValueError):
    """A Cloud Run setting is missing or invalid."""


@dataclass
class CloudRunConfig:
    """Where the model image goes and how the Cloud Run revision runs and takes traffic.

    Attributes:
        image_repository: target repository (optionally `:tag`; default tag `v<version>`).
        project, region: the Google Cloud project and region of the service (mode cloud_run).
        service: the Cloud Run / Knative service name.
        model_name: the model's name (`/v1/models/<model_name>`).
        model_version: the version the model is served as; None = Unix time at push.
        base_image: an image with `tensorflow_model_server` on PATH.
        mode: "cloud_run" (Admin API), "knative" (write `knative_manifest_path`), "image_only".
        tag: the traffic tag of the new revision (its own URL).
        traffic_percent: share of traffic for the new revision; 0 = tag URL only, 100 = all.
        cpu, memory: container limits (Cloud Run syntax: "2", "4Gi").
        concurrency: maximum concurrent requests per instance.
        min_instances, max_instances: instance scaling bounds (max 0 = platform default).
        server_args: extra tensorflow_model_server flags (container args).
        env: extra environment variables of the container.
        service_account: the revision's service account email (None = project default).
        startup_period_s, startup_failure_threshold: startup probe on /v1/models/<name>:
            the model has period * threshold seconds to load.
        operation_timeout_s: how long to wait for each Cloud Run operation.
        api_endpoint: Cloud Run Admin API endpoint override (e.g. a regional endpoint).
        knative_manifest_path: where mode "knative" writes the manifest (YAML).
        knative_namespace: metadata.namespace of the Knative Service (None = omitted).
        previous_revision: for the Knative manifest, the revision that keeps the rest of the
            traffic during a canary (None = the new revision takes 100%).
    """

    image_repository: str
    project: str = ""
    region: str = ""
    service: str = ""
    model_name: str = "model"
    model_version: int | None = None
    base_image: str = DEFAULT_BASE_IMAGE
    mode: str = MODE_CLOUD_RUN
    tag: str = "canary"
    traffic_percent: int = 0
    cpu: str = "2"
    memory: str = "4Gi"
    concurrency: int = 80
    min_instances: int = 0
    max_instances: int = 0
    server_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    startup_period_s: int = 5
    startup_failure_threshold: int = 60
    operation_timeout_s: float = 900.0
    api_endpoint: str | None = None
    knative_manifest_path: str | None = None
    knative_namespace: str | None = None
    previous_revision: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.image_repository:
            problems.append("image_repository is required (e.g. REGION-docker.pkg.dev/P/R/NAME)")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != MODE_IMAGE_ONLY and not _SERVICE_RE.match(self.service or ""):
            problems.append(
                f"service {self.service!r} must be 1-49 lowercase letters, digits or hyphens, "
                "starting with a letter"
            )
        if self.mode == MODE_CLOUD_RUN and not (self.project and self.region):
            problems.append("project and region are required for mode 'cloud_run'")
        if self.mode == MODE_KNATIVE and not self.knative_manifest_path:
            problems.append("knative_manifest_path is required for mode 'knative'")
        if not _TAG_RE.match(self.tag or ""):
            problems.append(f"tag {self.tag!r} must be lowercase letters, digits or hyphens")
        if not 0 <= int(self.traffic_percent) <= 100:
            problems.append(f"traffic_percent must be 0..100, got {self.traffic_percent}")
        if self.concurrency < 1 or self.min_instances < 0 or self.max_instances < 0:
            problems.append("concurrency must be >= 1 and instance counts >= 0")
        if self.max_instances and self.min_instances > self.max_instances:
            problems.append("min_instances must not exceed max_instances")
        if self.operation_timeout_s <= 0:
            problems.append("operation_timeout_s must be > 0")
        if problems:
            raise CloudRunConfigError("Invalid Cloud Run settings: " + "; ".join(problems))

    @property
    def parent(self) -> str:
        """Returns `projects/<project>/locations/<region>`."""
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def service_name(self) -> str:
        """Returns the service's full resource name."""
        return f"{self.parent}/services/{self.service}"

    def to_json(self) -> str:
        """Returns the settings as a JSON object (the pusher's `push_destination`)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CloudRunConfig:
        """Returns the settings from a dict of field values.

        Raises:
            CloudRunConfigError: unknown keys or invalid values.
        """
        return dataclass_from_mapping(
            cls, values, what="Cloud Run settings", error=CloudRunConfigError
        )

    @classmethod
    def from_json(cls, text: str) -> CloudRunConfig:
        """Returns the settings parsed from a JSON object.

        Raises:
            CloudRunConfigError: not a JSON object, unknown keys or invalid values.
        """
        return dataclass_from_mapping(
            cls, text, what="Cloud Run settings", error=CloudRunConfigError
        )
