"""The kubernetes backend: a TF Serving pod next to the KFP executor pod.

Follows TFX's `KubernetesRunner`: a bare Pod (restart policy Never, the executor's retries
decide), named `tfx-serving-ext-canary-<random>`, owned by the executor pod (deleted with it),
with `active_deadline_seconds` as a hard stop, the ServingSpec's `serving_pod_overrides`
(annotations, env, resources) and service account, and the model read from the pipeline-root
PersistentVolumeClaim mounted read-only at the same path as in the executor pod. The canary
stages the models and the model config file under its working directory on that volume, so
every path means the same thing in both pods.

`build_pod_manifest` returns the pod as data (a `V1Pod`), so it is tested without a cluster.

"Inside a cluster" is what Kubernetes gives every pod: the service account token file and
`KUBERNETES_SERVICE_HOST`. TFX's `kube_utils.is_inside_kfp()` also wants `KFP_NAMESPACE`, which
open-source KFP v2 does not set (it sets `KFP_POD_NAME`, `KFP_POD_UID` and `NAMESPACE`), so the
pod and namespace are found from those, then the downward API's usual names, then the token's
namespace file.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from tfx_serving_ext.canary.backends.base import (
    BackendError,
    CanaryModels,
    DeadlineExceeded,
    JobAborted,
    ModelServerBackend,
    stage_models,
)
from tfx_serving_ext.canary.backends.docker import GRPC_PORT, serving_image
from tfx_serving_ext.protocol.model_config import model_server_config_text

logger = logging.getLogger(__name__)

POD_NAME_PREFIX = "tfx-serving-ext-canary-"
APP_LABEL = "tfx-serving-ext-canary"
CONTAINER_NAME = "model-server"
MODEL_VOLUME_NAME = "model-volume"
DEFAULT_ACTIVE_DEADLINE_SECONDS = 24 * 3600
_POLL_SECONDS = 5.0
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXECUTOR_CONTAINER_NAME = "main"  # the executor's container in a KFP (Argo) pod


def is_inside_cluster(
    environ: dict[str, str] | None = None, service_account_dir: Path = SERVICE_ACCOUNT_DIR
) -> bool:
    """Returns True in a Kubernetes pod that can reach the API (token file + service host)."""
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST")) and (service_account_dir / "token").is_file()


def current_pod_name(environ: dict[str, str] | None = None) -> str | None:
    """Returns this pod's name: KFP v2's `KFP_POD_NAME`, else `POD_NAME`, else `HOSTNAME`."""
    env = os.environ if environ is None else environ
    for key in ("KFP_POD_NAME", "POD_NAME", "HOSTNAME"):
        if env.get(key):
            return env[key]
    return None


def current_namespace(
    environ: dict[str, str] | None = None, service_account_dir: Path = SERVICE_ACCOUNT_DIR
) -> str | None:
    """Returns this pod's namespace: `KFP_NAMESPACE`, `NAMESPACE`, `POD_NAMESPACE`, else the
    service account's namespace file."""
    env = os.environ if environ is None else environ
    for key in ("KFP_NAMESPACE", "NAMESPACE", "POD_NAMESPACE"):
        if env.get(key):
            return env[key]
    namespace_file = service_account_dir / "namespace"
    if namespace_file.is_file():
        return namespace_file.read_text().strip() or None
    return None


def _in_cluster_api():
    """Returns a CoreV1Api configured from the pod's service account.

    Raises:
        BackendError: not inside a cluster, or the in-cluster configuration cannot be loaded.
    """
    if not is_inside_cluster():
        raise BackendError(
            "the kubernetes backend runs only inside a Kubernetes pod (a Kubeflow Pipelines "
            f"task): no service account token at {SERVICE_ACCOUNT_DIR / 'token'} or no "
            "KUBERNETES_SERVICE_HOST here. On Vertex Pipelines, or off-cluster, use the embedded "
            "backend (kubeflow_v2_runner --canary-backend embedded) or the docker backend"
        )
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException as exc:
        raise BackendError(f"cannot load the in-cluster Kubernetes configuration: {exc}") from exc
    return k8s.CoreV1Api()


def _is_under(parent: str, child: str) -> bool:
    parent_parts = Path(os.path.normpath(parent)).parts
    child_parts = Path(os.path.normpath(child)).parts
    return child_parts[: len(parent_parts)] == parent_parts


def find_claim_for_path(executor_pod, container_name: str, path: str | Path):
    """Returns (volume mount, claim name) of the executor's PVC holding `path`, or None.

    Raises:
        BackendError: the volume holding `path` is not a PersistentVolumeClaim.
    """
    containers = [c for c in executor_pod.spec.containers if c.name == container_name]
    if not containers:
        raise BackendError(f"the executor pod has no container named {container_name!r}")
    for mount in containers[0].volume_mounts or []:
        if _is_under(mount.mount_path, str(path)):
            volume = next(v for v in executor_pod.spec.volumes if v.name == mount.name)
            if volume.persistent_volume_claim is None:
                raise BackendError(
                    f"{path} lies on volume {mount.name!r}, which is not a PersistentVolumeClaim; "
                    "the model server pod can only share the model through a PVC"
                )
            return mount, volume.persistent_volume_claim.claim_name
    return None


def _env_var(env):
    from kubernetes import client as k8s

    if not env.name:
        raise BackendError("PodOverrides.env entries need a name")
    if env.HasField("value_from"):
        ref = env.value_from.secret_key_ref
        source = k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(name=ref.name, key=ref.key)
        )
        return k8s.V1EnvVar(name=env.name, value_from=source)
    return k8s.V1EnvVar(name=env.name, value=env.value)


def build_pod_manifest(
    *,
    image: str,
    config_path: str | Path,
    kubernetes_config,
    executor_pod,
    model_mount=None,
    claim_name: str | None = None,
):
    """Returns the V1Pod that runs TF Serving on the staged models.

    Args:
        image: the TF Serving image.
        config_path: the model config file on the shared volume.
        kubernetes_config: ServingSpec.kubernetes (service account, deadline, pod overrides).
        executor_pod: the V1Pod this executor runs in (owner, default service account).
        model_mount: the executor's V1VolumeMount holding the staged models, if any.
        claim_name: the PersistentVolumeClaim behind `model_mount`.

    Raises:
        BackendError: a negative `active_deadline_seconds` or an env override without a name.
    """
    from kubernetes import client as k8s

    overrides = kubernetes_config.serving_pod_overrides
    annotations = dict(overrides.annotations)
    env = [_env_var(e) for e in overrides.env]
    resources = None
    if overrides.HasField("resources"):
        resources = k8s.V1ResourceRequirements(
            requests=dict(overrides.resources.requests) or None,
            limits=dict(overrides.resources.limits) or None,
        )
    deadline = kubernetes_config.active_deadline_seconds or DEFAULT_ACTIVE_DEADLINE_SECONDS
    if deadline < 0:
        raise BackendError(f"active_deadline_seconds must be > 0, got {deadline}")
    container = k8s.V1Container(
        name=CONTAINER_NAME,
        image=image,
        args=[f"--port={GRPC_PORT}", f"--model_config_file={config_path}"],
        env=env,
        resources=resources,
        ports=[k8s.V1ContainerPort(container_port=GRPC_PORT, name="grpc")],
        volume_mounts=[],
    )
    volumes = []
    if model_mount is not None and claim_name:
        volumes.append(
            k8s.V1Volume(
                name=MODEL_VOLUME_NAME,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=claim_name, read_only=True
                ),
            )
        )
        container.volume_mounts.append(
            k8s.V1VolumeMount(
                name=MODEL_VOLUME_NAME, mount_path=model_mount.mount_path, read_only=True
            )
        )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(
            generate_name=POD_NAME_PREFIX,
            annotations=annotations,
            labels={"app": APP_LABEL},
            owner_references=[
                k8s.V1OwnerReference(
                    api_version=executor_pod.api_version,
                    kind=executor_pod.kind,
                    name=executor_pod.metadata.name,
                    uid=executor_pod.metadata.uid,
                )
            ],
        ),
        spec=k8s.V1PodSpec(
            containers=[container],
            service_account_name=(
                kubernetes_config.service_account_name or executor_pod.spec.service_account_name
            ),
            restart_policy="Never",
            active_deadline_seconds=deadline,
            volumes=volumes,
        ),
    )


class KubernetesBackend(ModelServerBackend):
    """TF Serving in a pod beside the KFP executor pod (TFX KubernetesRunner semantics)."""

    def __init__(
        self, models: CanaryModels, serving_spec, work_dir: str | Path, serving_binary=None
    ):
        super().__init__(models)
        # One of InfraValidator's serving binaries (docker.serving_binaries); default the first.
        self._image = serving_binary.image if serving_binary else serving_image(serving_spec)
        self._config = serving_spec.kubernetes
        self._work_dir = Path(work_dir)
        self._api = None
        self._namespace: str | None = None
        self._pod_name: str | None = None
        self._endpoint: str | None = None

    def identity(self) -> dict[str, Any]:
        return {"image": self._image}

    def __repr__(self) -> str:
        return f"KubernetesBackend(image={self._image}, pod={self._pod_name})"

    def start(self) -> None:
        if self._pod_name is not None:
            raise BackendError("the server was already started; create a new backend to restart")
        self._api = _in_cluster_api()
        self._namespace = current_namespace()
        pod_name = current_pod_name()
        if not self._namespace or not pod_name:
            raise BackendError(
                "cannot tell which pod and namespace this executor runs in: set KFP_POD_NAME "
                "(or POD_NAME) and NAMESPACE from the downward API"
            )
        executor_pod = self._api.read_namespaced_pod(name=pod_name, namespace=self._namespace)
        root = self._work_dir / "models"
        staged = stage_models(self.models, root, copy=True)
        config_path = root / "models.config"
        config_path.write_text(model_server_config_text([(n, str(p)) for n, p in staged]))
        found = find_claim_for_path(executor_pod, EXECUTOR_CONTAINER_NAME, config_path)
        mount, claim = found if found else (None, None)
        if claim:
            pvc = self._api.read_namespaced_persistent_volume_claim(claim, self._namespace)
            if "ReadWriteMany" not in (pvc.spec.access_modes or []):
                raise BackendError(
                    f"PersistentVolumeClaim {claim} must have access mode ReadWriteMany so the "
                    "model server pod can mount it on another node"
                )
        manifest = build_pod_manifest(
            image=self._image,
            config_path=config_path,
            kubernetes_config=self._config,
            executor_pod=executor_pod,
            model_mount=mount,
            claim_name=claim,
        )
        pod = self._api.create_namespaced_pod(namespace=self._namespace, body=manifest)
        self._pod_name = pod.metadata.name
        logger.info("Created model server pod %s", self._pod_name)

    def wait_until_running(self, deadline: float) -> None:
        from kubernetes.client import rest

        if self._pod_name is None:
            raise BackendError("start() the server before waiting for it")
        while time.time() < deadline:
            try:
                pod = self._api.read_namespaced_pod(self._pod_name, self._namespace)
            except rest.ApiException as exc:
                logger.info("Polling pod %s again after %s", self._pod_name, exc.reason)
                time.sleep(_POLL_SECONDS)
                continue
            phase = pod.status.phase
            if phase == "Running" and pod.status.pod_ip:
                self._endpoint = f"{pod.status.pod_ip}:{GRPC_PORT}"
                return
            if phase in ("Succeeded", "Failed"):
                raise JobAborted(f"model server pod {self._pod_name} ended (phase {phase})")
            time.sleep(_POLL_SECONDS)
        raise DeadlineExceeded(f"pod {self._pod_name} was not running before the deadline")

    def get_endpoint(self) -> str:
        if self._endpoint is None:
            raise BackendError("the pod is not running; call wait_until_running() first")
        return self._endpoint

    def get_logs(self) -> str | None:
        if self._pod_name is None or self._api is None:
            return None
        try:
            return self._api.read_namespaced_pod_log(
                name=self._pod_name, namespace=self._namespace, container=CONTAINER_NAME
            )
        except Exception:  # noqa: BLE001 - a log is best effort
            return None

    def stop(self) -> None:
        if self._pod_name is None or self._api is None:
            return
        from kubernetes.client import rest

        for attempt in range(5):
            try:
                self._api.delete_namespaced_pod(name=self._pod_name, namespace=self._namespace)
                return
            except rest.ApiException as exc:
                if exc.status == 404:
                    return
                time.sleep(2.0 * 2**attempt)
            except Exception:  # noqa: BLE001 - stop must not raise
                break
        logger.warning(
            "Could not delete pod %s; run `kubectl delete pod -n %s %s`",
            self._pod_name,
            self._namespace,
            self._pod_name,
        )
