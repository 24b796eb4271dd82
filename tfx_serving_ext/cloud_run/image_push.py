"""Returns the digest of a model image built on a base image and pushed to a registry.

Pulls only the base image's manifest and config (never its layers, unless the target registry
lacks them and cannot mount them), builds the model layer locally, and pushes blobs then the
manifest. Base layers already in the target repository are skipped; in the same registry they
are mounted across repositories; otherwise they are streamed from the base registry.

Usage:
    image = build_and_push_image(
        "/pipeline/Trainer/model/7/Format-Serving",
        target="us-central1-docker.pkg.dev/my-project/models/penguin",
        model_name="penguin",
        model_version=7,
    )
    image.reference  # us-central1-docker.pkg.dev/my-project/models/penguin@sha256:...
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx_serving_ext.cloud_run import image as img
from tfx_serving_ext.cloud_run import registry as reg
from tfx_serving_ext.cloud_run.config import DEFAULT_BASE_IMAGE
from tfx_serving_ext.cloud_run.errors import ImageBuildError

logger = logging.getLogger(__name__)


ClientFactory = Callable[[str], reg.RegistryClient]


@dataclass(frozen=True)
class PushedImage:
    """An image in the registry: where it is, its digest, and what it holds."""

    reference: str  # registry/repository@sha256:... (what deployments should use)
    tagged_reference: str  # registry/repository:tag
    digest: str
    config: dict[str, Any] = field(repr=False)
    manifest: dict[str, Any] = field(repr=False)
    model_layer_digest: str = ""


class _IteratorReader:
    """Adapts an iterator of byte chunks to `read(n)`."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = chunks, b""

    def read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def _copy_base_layers(
    layers: list[dict[str, Any]],
    base_ref: reg.ImageReference,
    base_client: reg.RegistryClient,
    target_ref: reg.ImageReference,
    target_client: reg.RegistryClient,
) -> None:
    same_registry = base_client is target_client
    for layer in layers:
        digest = layer["digest"]
        if target_client.blob_exists(target_ref.repository, digest):
            continue
        if same_registry and target_client.mount_blob(
            target_ref.repository, digest, base_ref.repository
        ):
            logger.info("Mounted base layer %s from %s", digest[:19], base_ref.repository)
            continue
        logger.info(
            "Copying base layer %s (%d bytes) to %s", digest[:19], layer["size"], target_ref
        )
        reader = _IteratorReader(base_client.iter_blob(base_ref.repository, digest))
        target_client.upload_blob(target_ref.repository, digest, layer["size"], reader.read)


def _push_blob(client: reg.RegistryClient, repository: str, digest: str, path_or_bytes) -> None:
    if client.blob_exists(repository, digest):
        return
    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
        client.upload_blob(repository, digest, len(data), io.BytesIO(data).read)
        return
    size = Path(path_or_bytes).stat().st_size
    with open(path_or_bytes, "rb") as f:
        client.upload_blob(repository, digest, size, f.read)


def build_and_push_image(
    model_dir: str | os.PathLike,
    *,
    target: str,
    model_name: str,
    model_version: int,
    base_image: str = DEFAULT_BASE_IMAGE,
    source_uri: str | None = None,
    port: int = img.DEFAULT_PORT,
    extra_env: dict[str, str] | None = None,
    client_factory: ClientFactory = reg.RegistryClient,
) -> PushedImage:
    """Returns the pushed model image: `base_image` plus a layer with the SavedModel.

    Args:
        model_dir: the SavedModel directory (holding saved_model.pb).
        target: target repository, optionally with a tag (default tag `v<model_version>`).
        model_name: the model's name: `/models/<model_name>/`, `MODEL_NAME`, the REST route.
        model_version: the version directory the model is served as.
        base_image: image with `tensorflow_model_server` on PATH (linux/amd64 picked from a
            multi-arch index).
        source_uri: where the model came from (the Model artifact URI), recorded as a label
            when it is a remote URI (a path on this host is not recorded).
        port: the port exposed in the image config (Cloud Run's default $PORT is 8080).
        extra_env: more environment variables baked into the image.
        client_factory: returns a registry client for a host (tests and custom TLS).

    Raises:
        ImageBuildError: the model directory, the model name or the base image is unusable.
        RegistryError: a registry refused a request (`RegistryAuthError` for credentials).
    """
    img.checked_model_name(model_name)
    if not (Path(model_dir) / "saved_model.pb").is_file():
        raise ImageBuildError(
            f"{model_dir} holds no saved_model.pb; pass the SavedModel directory "
            "(for a TFX Model artifact, its Format-Serving sub-directory)."
        )
    base_ref = reg.ImageReference.parse(base_image)
    target_ref = reg.ImageReference.parse(target)
    if target_ref.digest:
        raise ImageBuildError(f"The target {target} names a digest; give a repository or tag.")
    tag = target_ref.tag if ":" in target.rsplit("/", 1)[-1] else f"v{model_version}"
    clients: dict[str, reg.RegistryClient] = {}

    def client_for(host: str) -> reg.RegistryClient:
        if host not in clients:
            clients[host] = client_factory(host)
        return clients[host]

    base_client, target_client = client_for(base_ref.registry), client_for(target_ref.registry)
    base_manifest = base_client.get_image_manifest(base_ref.repository, base_ref.reference)
    base_config_digest = base_manifest.json["config"]["digest"]
    base_config = json.loads(base_client.get_blob(base_ref.repository, base_config_digest))
    labels = img.model_labels(model_name, model_version, source_uri, base_ref, base_manifest.digest)

    with tempfile.TemporaryDirectory(prefix="tfx-serving-ext-layer-") as tmp:
        layer = img.write_model_layer(model_dir, model_name, model_version, Path(tmp) / "layer")
        logger.info("Model layer %s (%d bytes)", layer.digest, layer.size)
        config = img.build_image_config(
            base_config,
            layer,
            model_name=model_name,
            model_version=model_version,
            labels=labels,
            port=port,
            extra_env=extra_env,
        )
        config_raw = img.canonical_json(config)
        manifest_raw, media_type = img.build_manifest(
            base_manifest,
            config_raw,
            layer,
            {
                "org.opencontainers.image.base.name": str(base_ref),
                "org.opencontainers.image.base.digest": base_manifest.digest,
            },
        )
        _copy_base_layers(
            base_manifest.json["layers"], base_ref, base_client, target_ref, target_client
        )
        _push_blob(target_client, target_ref.repository, layer.digest, layer.path)
    _push_blob(target_client, target_ref.repository, reg.sha256_digest(config_raw), config_raw)
    digest = target_client.put_manifest(target_ref.repository, tag, manifest_raw, media_type)
    pinned = target_ref.with_digest(digest)
    logger.info("Pushed %s:%s as %s", target_ref.repository, tag, digest)
    return PushedImage(
        reference=str(pinned),
        tagged_reference=f"{target_ref.registry}/{target_ref.repository}:{tag}",
        digest=digest,
        config=config,
        manifest=json.loads(manifest_raw),
        model_layer_digest=layer.digest,
    )
