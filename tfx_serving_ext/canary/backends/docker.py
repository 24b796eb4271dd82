"""The docker backend: the `tensorflow/serving` image through the docker SDK.

Follows TFX's `LocalDockerRunner` and `serving_bins.TensorFlowServing`: the image (name, tag or
digest) comes from the ServingSpec's `tensorflow_serving`, each SavedModel is bind-mounted
read-only as version 1 of its model (`/models/<name>/1`), the container is auto-removed when it
stops, and readiness is the container running with its gRPC port accepting connections. Unlike
TFX it publishes the gRPC port on the loopback address only (or the configured
`host_ip_address`) and serves the candidate and the baseline from one model config file.

`build_container_spec` returns the `containers.run(**spec)` arguments as data, so they are
tested without a daemon.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from tfx_serving_ext.canary.backends.base import (
    CANDIDATE_VERSION,
    BackendError,
    CanaryModels,
    DeadlineExceeded,
    JobAborted,
    ModelServerBackend,
)
from tfx_serving_ext.protocol.model_config import model_server_config_text

logger = logging.getLogger(__name__)

DEFAULT_IMAGE = "tensorflow/serving"
GRPC_PORT = 8500
CONTAINER_MODEL_ROOT = "/models"
CONTAINER_CONFIG_PATH = "/models/models.config"
LABEL = "tfx_serving_ext.canary"
_POLL_SECONDS = 0.5


def serving_image(serving_spec) -> str:
    """Returns the image the ServingSpec names: `<image_name>:<first tag>` or `@<first digest>`.

    Raises:
        BackendError: the spec names no tensorflow_serving tag or digest.
    """
    config = serving_spec.tensorflow_serving
    name = config.image_name or DEFAULT_IMAGE
    if config.tags:
        return f"{name}:{config.tags[0]}"
    if config.digests:
        return f"{name}@{config.digests[0]}"
    raise BackendError(
        "ServingSpec.tensorflow_serving has no tags or digests: set e.g. "
        "tensorflow_serving=TensorFlowServing(tags=['2.19.1'])"
    )


def container_config_text(models: CanaryModels) -> str:
    """Returns the model config file as the container sees it (paths under /models)."""
    return model_server_config_text(
        [(name, f"{CONTAINER_MODEL_ROOT}/{name}") for name, _ in models.hosted()]
    )


def build_container_spec(
    models: CanaryModels, image: str, config_path: str | Path, *, host_ip: str = "127.0.0.1"
) -> dict[str, Any]:
    """Returns the keyword arguments of `docker_client.containers.run` for the canary server.

    Args:
        models: the candidate (and baseline) SavedModel directories on the host.
        image: the TF Serving image.
        config_path: the host path of the file `container_config_text(models)` was written to.
        host_ip: the host address the gRPC port is published on (a random free port).
    """
    from docker import types as docker_types

    mounts = [
        docker_types.Mount(
            type="bind",
            source=str(Path(saved_model_dir).absolute()),
            target=f"{CONTAINER_MODEL_ROOT}/{name}/{CANDIDATE_VERSION}",
            read_only=True,
        )
        for name, saved_model_dir in models.hosted()
    ]
    mounts.append(
        docker_types.Mount(
            type="bind",
            source=str(Path(config_path).absolute()),
            target=CONTAINER_CONFIG_PATH,
            read_only=True,
        )
    )
    return {
        "image": image,
        # The image's entrypoint passes these on to tensorflow_model_server; a config file
        # takes precedence over its MODEL_NAME default.
        "command": [f"--port={GRPC_PORT}", f"--model_config_file={CONTAINER_CONFIG_PATH}"],
        "mounts": mounts,
        "ports": {f"{GRPC_PORT}/tcp": (host_ip, None)},
        "environment": {"TF_CPP_MAX_VLOG_LEVEL": "0"},
        "labels": {LABEL: models.model_name},
        "detach": True,
        "auto_remove": True,
    }


def make_docker_client(local_docker_config=None):
    """Returns a DockerClient honouring LocalDockerConfig's base URL, API version and timeout."""
    import docker

    params: dict[str, Any] = {}
    if local_docker_config is not None:
        if local_docker_config.client_timeout_seconds:
            params["timeout"] = local_docker_config.client_timeout_seconds
        if local_docker_config.client_base_url:
            params["base_url"] = local_docker_config.client_base_url
        if local_docker_config.client_api_version:
            params["version"] = local_docker_config.client_api_version
    if "base_url" in params:
        return docker.DockerClient(**params)
    return docker.from_env(**params)


def docker_daemon_reachable(local_docker_config=None) -> bool:
    """Returns whether a Docker daemon answers a ping (False when none is configured)."""
    try:
        client = make_docker_client(local_docker_config)
    except Exception:  # noqa: BLE001 - docker raises several kinds when no daemon exists
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()


def _published_port(ports: dict, container_port: int) -> int:
    for mapping in ports.get(f"{container_port}/tcp") or []:
        if mapping.get("HostPort"):
            return int(mapping["HostPort"])
    raise JobAborted(f"container port {container_port} is not published (mappings: {ports})")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


class DockerBackend(ModelServerBackend):
    """TF Serving in a local Docker container (TFX LocalDockerRunner semantics)."""

    def __init__(self, models: CanaryModels, serving_spec):
        super().__init__(models)
        self._image = serving_image(serving_spec)
        local = serving_spec.local_docker
        self._local_config = local
        self._host_ip = local.host_ip_address or "127.0.0.1"
        self._client = None
        self._container = None
        self._endpoint: str | None = None
        self._config_dir: tempfile.TemporaryDirectory | None = None

    def __repr__(self) -> str:
        container = self._container.short_id if self._container is not None else None
        return f"DockerBackend(image={self._image}, container={container})"

    def start(self) -> None:
        if self._container is not None:
            raise BackendError("the server was already started; create a new backend to restart")
        self._config_dir = tempfile.TemporaryDirectory(prefix="canary-docker-")
        config_path = Path(self._config_dir.name) / "models.config"
        config_path.write_text(container_config_text(self.models))
        spec = build_container_spec(self.models, self._image, config_path, host_ip=self._host_ip)
        self._client = make_docker_client(self._local_config)
        logger.info("Running %s with %s", self._image, spec["command"])
        self._container = self._client.containers.run(**spec)

    def wait_until_running(self, deadline: float) -> None:
        from docker import errors as docker_errors

        if self._container is None:
            raise BackendError("start() the server before waiting for it")
        while time.time() < deadline:
            try:
                self._container.reload()
            except docker_errors.NotFound as exc:
                raise JobAborted("the container is gone (it exited and was removed)") from exc
            status = self._container.status
            if status == "running":
                port = _published_port(self._container.ports, GRPC_PORT)
                host = "127.0.0.1" if self._host_ip == "0.0.0.0" else self._host_ip
                if _port_open(host, port):
                    self._endpoint = f"{host}:{port}"
                    return
            elif status != "created":
                raise JobAborted(f"the container ended (status {status})")
            time.sleep(_POLL_SECONDS)
        raise DeadlineExceeded(f"the {self._image} container was not serving before the deadline")

    def get_endpoint(self) -> str:
        if self._endpoint is None:
            raise BackendError("the server is not running; call wait_until_running() first")
        return self._endpoint

    def get_logs(self) -> str | None:
        if self._container is None:
            return None
        try:
            logs = self._container.logs()
        except Exception:  # noqa: BLE001 - the container may be gone already
            return None
        return logs.decode("utf-8", "replace") if isinstance(logs, bytes) else str(logs)

    def stop(self) -> None:
        if self._container is not None:
            try:
                logger.info("Stopping container %s", self._container.short_id)
                self._container.stop(timeout=10)
            except Exception:  # noqa: BLE001 - stop must not raise (it runs in finally)
                logger.warning(
                    "Could not stop container %s; remove it with `docker rm -f %s`",
                    self._container.short_id,
                    self._container.id,
                    exc_info=True,
                )
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._config_dir is not None:
            self._config_dir.cleanup()
            self._config_dir = None
