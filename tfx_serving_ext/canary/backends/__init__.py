"""Where a canary's model server runs: one small interface, one class per platform.

- `embedded`: the project's server in this process (`embedded-subprocess`: as a child process);
- `docker`: the `tensorflow/serving` image via the docker SDK (ServingSpec.local_docker);
- `kubernetes`: a TF Serving pod beside the KFP executor (ServingSpec.kubernetes);
- `endpoint`: a running TF Serving at an address, the candidate added under a model name of its
  own (never where live traffic reaches it).

`choose_backend("auto", serving_spec)` follows the ServingSpec's `serving_platform`; with
`local_docker` and no reachable daemon, or with no platform at all, it picks `embedded`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tfx_serving_ext.canary.backends.base import (
    BackendError,
    CanaryModels,
    DeadlineExceeded,
    JobAborted,
    ModelServerBackend,
    ModelTarget,
)

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "embedded", "embedded-subprocess", "docker", "kubernetes", "endpoint")

__all__ = [
    "BACKENDS",
    "BackendError",
    "CanaryModels",
    "DeadlineExceeded",
    "JobAborted",
    "ModelServerBackend",
    "ModelTarget",
    "choose_backend",
    "create_backend",
    "serving_binaries_for",
]


def choose_backend(requested: str, serving_spec=None) -> str:
    """Returns the concrete backend name for `requested` ("auto" follows the ServingSpec).

    Raises:
        BackendError: an unknown backend name.
    """
    if requested not in BACKENDS:
        raise BackendError(f"unknown canary backend {requested!r}; choose one of {BACKENDS}")
    if requested != "auto":
        return requested
    platform = serving_spec.WhichOneof("serving_platform") if serving_spec is not None else None
    if platform == "kubernetes":
        return "kubernetes"
    if platform == "local_docker":
        from tfx_serving_ext.canary.backends.docker import docker_daemon_reachable

        if docker_daemon_reachable(serving_spec.local_docker):
            return "docker"
        logger.warning(
            "ServingSpec asks for local_docker but no Docker daemon answers: "
            "using the embedded server"
        )
    # Loud: a blessing from the embedded server does not say the model runs in TF Serving.
    logger.warning(
        "CANARY BACKEND 'auto' FELL BACK TO THE EMBEDDED SERVER: the model runs under this "
        "process's TensorFlow, not TF Serving, so a kernel or op TF Serving lacks is not caught. "
        "The report and the blessing record it; set require_tf_serving to refuse such a blessing."
    )
    return "embedded"


def serving_binaries_for(name: str, serving_spec) -> list:
    """Returns what each run of the canary serves with: one InfraValidator serving binary per
    tag and digest of the ServingSpec for the backends that run an image (docker, kubernetes),
    each of which the model must pass, as in InfraValidator; `[None]` for the others.

    Raises:
        BackendError: an image backend and a ServingSpec without a valid tag or digest.
    """
    if name not in ("docker", "kubernetes"):
        return [None]
    from tfx_serving_ext.canary.backends.docker import serving_binaries

    return serving_binaries(serving_spec)


def create_backend(
    name: str,
    models: CanaryModels,
    *,
    serving_spec=None,
    work_dir: str | Path,
    endpoint_address: str | None = None,
    endpoint_base_path: str | Path | None = None,
    endpoint_model_config_file: str | Path | None = None,
    endpoint_server_base_path: str | Path | None = None,
    endpoint_server_version: str | None = None,
    serving_binary=None,
    enable_warmup: bool = True,
) -> ModelServerBackend:
    """Returns an unstarted backend of the concrete kind `name` (see `choose_backend`).

    `serving_binary` is the image docker and kubernetes run: one of `serving_binaries_for`.

    Raises:
        BackendError: an unknown name, or the endpoint backend without address and volume.
    """
    if name == "embedded":
        from tfx_serving_ext.canary.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(models, work_dir, enable_warmup=enable_warmup)
    if name == "embedded-subprocess":
        from tfx_serving_ext.canary.backends.embedded import EmbeddedSubprocessBackend

        return EmbeddedSubprocessBackend(models, work_dir, enable_warmup=enable_warmup)
    if name == "docker":
        from tfx_serving_ext.canary.backends.docker import DockerBackend

        return DockerBackend(models, serving_spec, serving_binary)
    if name == "kubernetes":
        from tfx_serving_ext.canary.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(models, serving_spec, work_dir, serving_binary)
    if name == "endpoint":
        if not endpoint_address or not endpoint_base_path:
            raise BackendError(
                "the endpoint backend needs the server's gRPC address and the volume it polls "
                "(endpoint_address and endpoint_base_path)"
            )
        from tfx_serving_ext.canary.backends.endpoint import EndpointBackend

        return EndpointBackend(
            models,
            endpoint_address,
            endpoint_base_path,
            model_config_file=endpoint_model_config_file,
            server_base_path=endpoint_server_base_path,
            server_version=endpoint_server_version,
        )
    raise BackendError(f"unknown canary backend {name!r}; choose one of {BACKENDS[1:]}")
