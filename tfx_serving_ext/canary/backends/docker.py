"""The docker backend: the `tensorflow/serving` image through the docker SDK.

The image comes from TFX InfraValidator's own `serving_bins.parse_serving_binaries`: one
`TensorFlowServing` binary per tag and per digest of the ServingSpec's `tensorflow_serving`, each
validated here (a reference Docker would refuse is named before any container starts) and run in
turn, as InfraValidator validates the model against every one of them; the binary gives the image
reference and the gRPC container port. After the container runs, `image_digest` is the repository
digest the engine resolved the reference to and `image_id` the content address of what ran.

The container itself is not started with TFX's `LocalDockerRunner`, because that runner cannot
do the canary's job: it serves one model (`MODEL_NAME` plus one bind mount), while the canary
serves the candidate and the baseline side by side in one server from a model config file. And
where it differs from LocalDockerRunner besides:
- it publishes the gRPC port on the loopback address only (or the configured
  `host_ip_address`); LocalDockerRunner publishes every port on all interfaces and then looks
  for a `0.0.0.0` mapping;
- it calls the server running only once the model server itself answers a gRPC call:
  docker-proxy accepts TCP on the published port as soon as the container starts, long before
  the server inside listens, so an open port says nothing (and would count TensorFlow's import
  as load time);
- it removes the container in `stop()` rather than auto-removing it when it exits, so the log of
  a server that died (a model that failed to load) is still there for the report;
- its Docker client honours `DOCKER_HOST` when LocalDockerConfig names no `client_base_url`.
Nor is InfraValidator's `TensorFlowServingClient` the readiness probe or the load wait: it asks
GetModelStatus without a deadline and reads every RPC error as "not ready", so it cannot tell a
server that answers from docker-proxy's bare TCP accept, and a model that ends in END gives
only "Model server failed to load the model."; the canary's `ServingClient` waits per version
and keeps the server's own message for the report.
`timings()` separates the container's start from the server's start-up.

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
from tfx_serving_ext.canary.backends.images import serving_binaries, serving_image
from tfx_serving_ext.protocol.model_config import model_server_config_text

logger = logging.getLogger(__name__)

__all__ = [
    "DockerBackend",
    "build_container_spec",
    "container_config_text",
    "docker_daemon_reachable",
    "make_docker_client",
    "model_server_answers",
    "registry_digest",
    "serving_binaries",
    "serving_image",
]

GRPC_PORT = 8500
CONTAINER_MODEL_ROOT = "/models"
CONTAINER_CONFIG_PATH = "/models/models.config"
LABEL = "tfx_serving_ext.canary"
# By stop() the canary has its answers and the server's log: no request is left to drain, so a
# server that takes longer than this to exit on SIGTERM is killed (docker stop's default is 10).
STOP_GRACE_SECONDS = 2
_POLL_SECONDS = 0.2  # a Docker API call and a gRPC probe a poll: cheap next to a start-up


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
    }


def normalized_repository(reference: str) -> str:
    """Returns the fully qualified repository of an image reference, tag and digest dropped.

    Docker Hub's short forms are expanded as the engine does: `ubuntu` and `docker.io/ubuntu`
    are `docker.io/library/ubuntu`, `tensorflow/serving` is `docker.io/tensorflow/serving`, and
    `index.docker.io/...` is `docker.io/...`. A first component with a `.` or `:`, or
    `localhost`, is a registry (`localhost:5000/serving:dev` keeps its port).

    Raises:
        BackendError: an empty reference.
    """
    name = reference.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    if not name:
        raise BackendError(
            f"image reference {reference!r} names no repository; write it as name[:tag][@digest]"
        )
    domain, sep, remainder = name.partition("/")
    if not sep or ("." not in domain and ":" not in domain and domain != "localhost"):
        domain, remainder = "docker.io", name
    elif domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in remainder:
        remainder = f"library/{remainder}"
    return f"{domain}/{remainder}"


def registry_digest(image: str, image_attrs: dict[str, Any]) -> str | None:
    """Returns the digest (`sha256:...`) `image`'s own repository gives the image, else None.

    An image pulled or tagged under several repositories lists a digest per repository in its
    `RepoDigests` (`docker image inspect`); only the entry of `image`'s repository says what
    `image` is in its registry. When no entry is of that repository (an image built or retagged
    locally and never pushed there), there is no registry digest: the image ID says what ran.

    Args:
        image: the reference that was run (`name:tag`; a `name@digest` is its own answer).
        image_attrs: the engine's attributes of the image (`docker_client.images.get().attrs`).
    """
    if "@" in image:
        return image.rsplit("@", 1)[1]
    repository = normalized_repository(image)
    for entry in image_attrs.get("RepoDigests") or []:
        name, sep, digest = entry.partition("@")
        if sep and name and normalized_repository(name) == repository:
            return digest
    return None


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


def model_server_answers(address: str, model_name: str, timeout: float = 2.0) -> bool:
    """Returns whether a TF Serving gRPC server at `address` answers GetModelStatus.

    Any answer counts, NOT_FOUND included (the model may still be loading); UNAVAILABLE (nothing
    listening behind the port, or no HTTP/2 handshake) and a missed deadline do not.
    """
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    channel = grpc.insecure_channel(address)
    try:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=timeout)
        return True
    except grpc.RpcError as exc:
        return exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        channel.close()


class DockerBackend(ModelServerBackend):
    """TF Serving in a local Docker container (TFX LocalDockerRunner semantics).

    Args:
        models: the candidate (and baseline) SavedModel directories.
        serving_spec: the ServingSpec (`local_docker` for the client and host address).
        serving_binary: which of `serving_binaries(serving_spec)` to run (default: the first).
    """

    def __init__(self, models: CanaryModels, serving_spec, serving_binary=None):
        super().__init__(models)
        self._binary = serving_binary or serving_binaries(serving_spec)[0]
        self._image = self._binary.image
        self._image_digest: str | None = (
            self._image.rsplit("@", 1)[1] if "@" in self._image else None
        )
        self._image_id: str | None = None
        local = serving_spec.local_docker
        self._local_config = local
        self._host_ip = local.host_ip_address or "127.0.0.1"
        self._client = None
        self._container = None
        self._endpoint: str | None = None
        self._config_dir: tempfile.TemporaryDirectory | None = None
        self._started_at: float | None = None
        self._timings: dict[str, float] = {}

    def __repr__(self) -> str:
        container = self._container.short_id if self._container is not None else None
        return f"DockerBackend(image={self._image}, container={container})"

    @property
    def image(self) -> str:
        """Returns the image reference this backend runs (`name:tag` or `name@digest`)."""
        return self._image

    @property
    def image_digest(self) -> str | None:
        """Returns the repository digest (`sha256:...`) of the image that ran, None when the
        engine knows none (an image built locally and never pushed or pulled)."""
        return self._image_digest

    @property
    def image_id(self) -> str | None:
        """Returns the content address (`sha256:...`) of the image the container ran."""
        return self._image_id

    def identity(self) -> dict[str, Any]:
        return {
            "image": self._image,
            "image_digest": self._image_digest,
            "image_id": self._image_id,
        }

    def _resolve_image(self) -> None:
        """Records the ID and repository digest of the image the container runs."""
        try:
            self._image_id = self._container.attrs.get("Image") or None
            image = self._client.images.get(self._image_id or self._image)
            self._image_id = image.id
            attrs = image.attrs
        except Exception:  # noqa: BLE001 - the identity is recorded even when the daemon is gone
            logger.info("Could not read the digest of %s", self._image, exc_info=True)
            return
        self._image_digest = registry_digest(self._image, attrs)
        if self._image_digest is None:
            logger.info(
                "%s has no digest of its own repository (RepoDigests: %s); recording image ID %s",
                self._image,
                attrs.get("RepoDigests") or [],
                self._image_id,
            )

    def start(self) -> None:
        if self._container is not None:
            raise BackendError("the server was already started; create a new backend to restart")
        self._config_dir = tempfile.TemporaryDirectory(prefix="canary-docker-")
        config_path = Path(self._config_dir.name) / "models.config"
        config_path.write_text(container_config_text(self.models))
        spec = build_container_spec(self.models, self._image, config_path, host_ip=self._host_ip)
        self._client = make_docker_client(self._local_config)
        logger.info("Running %s with %s", self._image, spec["command"])
        self._started_at = time.monotonic()
        from docker import errors as docker_errors

        try:
            self._container = self._client.containers.run(**spec)
        except docker_errors.ImageNotFound as exc:
            raise BackendError(
                f"the Docker engine cannot find or pull {self._image} ({exc.explanation}); check "
                "ServingSpec.tensorflow_serving (image_name, tags, digests) and the registry"
            ) from exc
        except docker_errors.APIError as exc:
            raise BackendError(f"the Docker engine refused to run {self._image}: {exc}") from exc

    def wait_until_running(self, deadline: float) -> None:
        """Returns once the model server in the container answers gRPC (models may load on).

        Raises:
            JobAborted: the container exited or is gone.
            DeadlineExceeded: the server did not answer before `deadline`.
        """
        from docker import errors as docker_errors

        if self._container is None:
            raise BackendError("start() the server before waiting for it")
        while time.time() < deadline:
            try:
                self._container.reload()
            except docker_errors.NotFound as exc:
                raise JobAborted("the container is gone (it was removed)") from exc
            status = self._container.status
            if status == "running":
                if "container_start_seconds" not in self._timings:
                    self._resolve_image()
                self._note("container_start_seconds")
                port = _published_port(self._container.ports, self._binary.container_port)
                host = "127.0.0.1" if self._host_ip == "0.0.0.0" else self._host_ip
                address = f"{host}:{port}"
                if _port_open(host, port) and model_server_answers(
                    address,
                    self.models.model_name,
                    timeout=max(0.1, min(2.0, deadline - time.time())),
                ):
                    self._note("server_start_seconds")
                    self._endpoint = address
                    return
            elif status != "created":
                exit_code = self._container.attrs.get("State", {}).get("ExitCode")
                raise JobAborted(
                    f"the {self._image} container exited (status {status}, exit code "
                    f"{exit_code}) before its model server answered"
                )
            time.sleep(_POLL_SECONDS)
        raise DeadlineExceeded(
            f"the model server in the {self._image} container did not answer gRPC before the "
            "deadline"
        )

    def _note(self, name: str) -> None:
        if name not in self._timings and self._started_at is not None:
            self._timings[name] = round(time.monotonic() - self._started_at, 3)

    def timings(self) -> dict[str, float]:
        """Returns seconds from `start()` until the container ran and until its server answered."""
        return dict(self._timings)

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
            container, self._container = self._container, None
            try:
                logger.info("Stopping container %s", container.short_id)
                container.stop(timeout=STOP_GRACE_SECONDS)
            except Exception:  # noqa: BLE001 - stop must not raise (it runs in finally)
                logger.info("Could not stop container %s", container.short_id, exc_info=True)
            try:
                container.remove(v=True, force=True)
            except Exception as exc:  # noqa: BLE001
                from docker import errors as docker_errors

                if not isinstance(exc, docker_errors.NotFound):
                    logger.warning(
                        "Could not remove container %s; remove it with `docker rm -f %s`",
                        container.short_id,
                        container.id,
                        exc_info=True,
                    )
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._config_dir is not None:
            self._config_dir.cleanup()
            self._config_dir = None
