"""Returns Cloud Run deployments made through the Cloud Run Admin API (`run_v2.ServicesClient`).

`deploy_revision` creates the service or updates it with a new revision running the image by
digest (never a mutable tag), a startup probe on TF Serving's model status route
`/v1/models/<name>`, the configured resources, concurrency and scaling, and the canary traffic
split from `traffic.canary_split`. `promote` and `rollback` only change the traffic block.
Every change is a long-running operation that is waited on with the configured timeout; an
API error becomes `DeployError`, an operation still running at the deadline `DeployTimeout`.

The client uses the REST transport (the same HTTP path in production and in the tests' local
stand-in for the API).

Usage:
    deployer = CloudRunDeployer.from_config(config)
    result = deployer.deploy_revision(config, image.reference, revision_name(...))
    deployer.promote(config.service)
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from tfx_serving_ext.cloud_run import traffic as tr
from tfx_serving_ext.cloud_run.config import CloudRunConfig
from tfx_serving_ext.cloud_run.errors import DeployError, DeployTimeout

logger = logging.getLogger(__name__)

CONTAINER_PORT = 8080
MAX_REVISION_NAME = 63


@dataclass
class DeployResult:
    """The service after a deploy, promote or rollback."""

    service: str  # full resource name
    revision: str  # the revision deployed, promoted, or restored
    service_url: str
    tag_url: str  # URL of the revision's tag ("" if untagged)
    traffic: list[tr.Target] = field(default_factory=list)

    def traffic_dicts(self) -> list[dict[str, Any]]:
        """Returns the traffic split as plain dicts (for JSON output)."""
        return [{"revision": t.revision, "percent": t.percent, "tag": t.tag} for t in self.traffic]


def revision_name(service: str, model_version: int, image_digest: str) -> str:
    """Returns a revision name unique per image: `<service>-v<version>-<digest prefix>`."""
    short = image_digest.split(":")[-1][:8]
    name = f"{service}-v{model_version}-{short}"
    if len(name) > MAX_REVISION_NAME:
        name = f"{service}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def make_services_client(api_endpoint: str | None = None, credentials: Any = None):
    """Returns a `run_v2.ServicesClient` on the REST transport.

    Args:
        api_endpoint: e.g. "us-central1-run.googleapis.com", or "http://127.0.0.1:PORT" for a
            local emulator (anonymous credentials).
        credentials: google-auth credentials (None = application default credentials).
    """
    from google.api_core.client_options import ClientOptions
    from google.cloud import run_v2

    options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
    if credentials is None and api_endpoint and api_endpoint.startswith("http://"):
        # A plain-HTTP endpoint is a local emulator: never send Google tokens in clear text.
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    return run_v2.ServicesClient(credentials=credentials, client_options=options, transport="rest")


def _targets_of(service) -> list[tr.Target]:
    from google.cloud import run_v2

    latest = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    targets = []
    for t in service.traffic:
        revision = t.revision
        if t.type_ == latest or not revision:
            revision = service.latest_ready_revision.rsplit("/", 1)[-1]
        if revision:
            targets.append(tr.Target(revision, t.percent, t.tag))
    return targets


def _traffic_block(targets: list[tr.Target]) -> list:
    from google.cloud import run_v2

    pinned = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
    return [
        run_v2.TrafficTarget(type_=pinned, revision=t.revision, percent=t.percent, tag=t.tag)
        for t in targets
    ]


def revision_template(config: CloudRunConfig, image: str, revision: str):
    """Returns the `RevisionTemplate` of a new revision running `image` (a digest reference)."""
    from google.cloud import run_v2

    probe = run_v2.Probe(
        http_get=run_v2.HTTPGetAction(path=f"/v1/models/{config.model_name}", port=CONTAINER_PORT),
        period_seconds=config.startup_period_s,
        timeout_seconds=min(config.startup_period_s, 5),
        failure_threshold=config.startup_failure_threshold,
    )
    container = run_v2.Container(
        image=image,
        args=list(config.server_args),
        env=[run_v2.EnvVar(name=k, value=v) for k, v in sorted(config.env.items())],
        ports=[run_v2.ContainerPort(name="http1", container_port=CONTAINER_PORT)],
        resources=run_v2.ResourceRequirements(
            limits={"cpu": config.cpu, "memory": config.memory}, startup_cpu_boost=True
        ),
        startup_probe=probe,
    )
    template = run_v2.RevisionTemplate(
        revision=revision,
        containers=[container],
        max_instance_request_concurrency=config.concurrency,
        scaling=run_v2.RevisionScaling(
            min_instance_count=config.min_instances, max_instance_count=config.max_instances
        ),
        labels={"model-name": config.model_name[:63].lower()},
    )
    if config.service_account:
        template.service_account = config.service_account
    return template


class CloudRunDeployer:
    """Deploys, promotes and rolls back revisions of Cloud Run services in one project/region.

    Args:
        project, region: where the services live.
        client: a `run_v2.ServicesClient` (default: `make_services_client()`).
        operation_timeout_s: how long to wait for each long-running operation.
        tag: the canary tag.
    """

    def __init__(
        self,
        project: str,
        region: str,
        *,
        client: Any = None,
        operation_timeout_s: float = 900.0,
        tag: str = "canary",
    ) -> None:
        self.parent = f"projects/{project}/locations/{region}"
        self.client = client or make_services_client()
        self.operation_timeout_s = operation_timeout_s
        self.tag = tag

    @classmethod
    def from_config(cls, config: CloudRunConfig, credentials: Any = None) -> CloudRunDeployer:
        """Returns a deployer for the config's project, region, endpoint, timeout and tag."""
        client = make_services_client(config.api_endpoint, credentials)
        return cls(
            config.project,
            config.region,
            client=client,
            operation_timeout_s=config.operation_timeout_s,
            tag=config.tag,
        )

    def _name(self, service: str) -> str:
        return service if service.startswith("projects/") else f"{self.parent}/services/{service}"

    def _call(self, what: str, fn, *args, **kwargs):
        from google.api_core import exceptions

        try:
            return fn(*args, **kwargs)
        except exceptions.GoogleAPICallError as e:
            raise DeployError(f"Cloud Run refused to {what}: {e}") from e

    def _wait(self, what: str, operation):
        from google.api_core import exceptions

        try:
            return operation.result(timeout=self.operation_timeout_s)
        except (concurrent.futures.TimeoutError, exceptions.RetryError) as e:
            raise DeployTimeout(
                f"Cloud Run did not finish the operation to {what} within "
                f"{self.operation_timeout_s:.0f} s (operation {operation.operation.name}); it may "
                "still complete: check the service's revisions, or raise operation_timeout_s "
                "(a slow model load shows as a failing startup probe in the revision's logs)."
            ) from e
        except exceptions.GoogleAPICallError as e:
            raise DeployError(f"Cloud Run failed to {what}: {e}") from e

    def get_service(self, service: str):
        """Returns the service, or None when it does not exist.

        Raises:
            DeployError: the API refused the request (other than not found).
        """
        from google.api_core import exceptions

        try:
            return self.client.get_service(name=self._name(service))
        except exceptions.NotFound:
            return None
        except exceptions.GoogleAPICallError as e:
            raise DeployError(f"Cloud Run refused to read service {service}: {e}") from e

    def _result(self, service, revision: str) -> DeployResult:
        targets = _targets_of(service)
        tag = next((t.tag for t in targets if t.revision == revision and t.tag), "")
        tag_url = next((s.uri for s in service.traffic_statuses if tag and s.tag == tag), "")
        return DeployResult(service.name, revision, service.uri, tag_url, targets)

    def _update_traffic(self, what: str, service, split: list[tr.Target], revision: str):
        service.traffic = _traffic_block(split)
        logger.info("%s: traffic %s", what, [(t.revision, t.percent, t.tag) for t in split])
        operation = self._call(what, self.client.update_service, service=service)
        return self._result(self._wait(what, operation), revision)

    def deploy_revision(
        self, config: CloudRunConfig, image: str, revision: str, percent: int | None = None
    ) -> DeployResult:
        """Returns the service after creating or updating it with a new tagged revision.

        Args:
            config: the service name and the revision's settings.
            image: the image by digest (`...@sha256:...`).
            revision: the new revision's name (see `revision_name`).
            percent: the new revision's share of traffic (default config.traffic_percent).

        Raises:
            DeployError: `image` is not pinned by digest, or the API refused or failed.
            DeployTimeout: an operation did not finish in time.
        """
        from google.cloud import run_v2

        if "@sha256:" not in image:
            raise DeployError(f"Deploy images by digest (repo@sha256:...), not {image!r}.")
        percent = config.traffic_percent if percent is None else percent
        template = revision_template(config, image, revision)
        service = self.get_service(config.service)
        what = f"deploy revision {revision} of {config.service}"
        if service is None:
            split = tr.canary_split([], revision, self.tag, percent)
            new = run_v2.Service(template=template, traffic=_traffic_block(split))
            logger.info("Creating service %s with revision %s", config.service, revision)
            operation = self._call(
                what,
                self.client.create_service,
                parent=self.parent,
                service=new,
                service_id=config.service,
            )
            return self._result(self._wait(what, operation), revision)
        split = tr.canary_split(_targets_of(service), revision, self.tag, percent)
        service.template = template
        return self._update_traffic(what, service, split, revision)

    def promote(self, service_name: str, revision: str | None = None) -> DeployResult:
        """Returns the service after giving the canary (or `revision`) 100% of traffic.

        Raises:
            DeployError: no such service or canary, or the API refused or failed.
            DeployTimeout: the operation did not finish in time.
        """
        service = self._existing(service_name)
        split = tr.promote_split(_targets_of(service), self.tag, revision)
        return self._update_traffic(
            f"promote {split[0].revision} of {service_name}", service, split, split[0].revision
        )

    def rollback(self, service_name: str) -> DeployResult:
        """Returns the service after sending all traffic back to the previous revision.

        Raises:
            DeployError: no such service or no previous revision, or the API refused or failed.
            DeployTimeout: the operation did not finish in time.
        """
        service = self._existing(service_name)
        split = tr.rollback_split(_targets_of(service), self.tag)
        return self._update_traffic(
            f"roll back {service_name} to {split[0].revision}", service, split, split[0].revision
        )

    def _existing(self, service_name: str):
        service = self.get_service(service_name)
        if service is None:
            raise DeployError(
                f"Cloud Run service {self._name(service_name)} does not exist; deploy it first."
            )
        return service
