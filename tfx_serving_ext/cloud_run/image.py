"""Returns a model image assembled without a Docker daemon: base image + one model layer.

The model layer holds the SavedModel at `/models/<name>/<version>/` and the `$PORT`-honouring
entrypoint at `/usr/local/bin/tfx-serving-ext-entrypoint.sh`. It is reproducible: entries in
sorted order, a fixed mtime, owner root (uid/gid 0, no user names), normalised modes readable by
every user, and gzip with no file name and mtime 0, so the same model always yields the same
layer digest and, on the same base, the same image digest. The image config is the base's with
the new layer's diff_id appended, `MODEL_NAME` / `MODEL_BASE_PATH` in the environment, the new
entrypoint, a non-root user, the serving port exposed and labels that record where the model
came from (a remote URI only: never a path on the building host).

The model is read through `protocol.model_tree`, the walker the volume publisher uses: links out
of the model, FIFOs, devices, sockets and loops are refused, files are opened with `O_NOFOLLOW`,
and the model name must be one safe path component, as on the serving volume.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from tfx_serving_ext.cloud_run.errors import ImageBuildError
from tfx_serving_ext.cloud_run.oci_format import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ImageReference,
    Manifest,
    sha256_digest,
)
from tfx_serving_ext.protocol.model_tree import (
    UnsafeModelPath,
    open_entry,
    validate_model_name,
    walk_model_tree,
)

MODEL_ROOT = "models"
ENTRYPOINT_PATH = "usr/local/bin/tfx-serving-ext-entrypoint.sh"
DEFAULT_PORT = 8080
# 1980-01-01: a fixed, valid mtime for every layer entry (zip-era tools reject earlier dates).
LAYER_MTIME = 315532800
# The image `created` time: fixed, so a rebuild of the same model yields the same digest.
IMAGE_CREATED = "1980-01-01T00:00:00Z"
LABEL_PREFIX = "dev.tfx-serving-ext"
# The server runs as this user, not root: the distroless "nonroot" ids, which need no passwd
# entry. Every layer entry is world-readable (directories and the entrypoint world-executable).
IMAGE_USER = "65532:65532"


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, target: IO[bytes] | None = None) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if self.target is not None:
            self.target.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256.hexdigest()


@dataclass(frozen=True)
class Layer:
    """A gzip layer written to `path`: its blob digest, uncompressed diff_id and size."""

    path: Path
    digest: str
    diff_id: str
    size: int


def entrypoint_script() -> bytes:
    """Returns the bytes of the entrypoint script shipped with this package."""
    return resources.files("tfx_serving_ext.cloud_run").joinpath("entrypoint.sh").read_bytes()


def _tar_info(name: str, *, is_dir: bool = False, size: int = 0, executable: bool = False):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if (is_dir or executable) else 0o644
    info.size = size
    info.mtime = LAYER_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def checked_model_name(model_name: str) -> str:
    """Returns `model_name` if it can name `/models/<name>/` (one safe path component).

    Raises:
        ImageBuildError: the name is empty, has a separator or `..`, or starts with a dot.
    """
    try:
        return validate_model_name(model_name)
    except UnsafeModelPath as exc:
        raise ImageBuildError(str(exc)) from exc


def write_model_layer(
    saved_model_dir: str | os.PathLike, model_name: str, model_version: int, out_path: Path
) -> Layer:
    """Returns the reproducible gzip layer holding the model and the entrypoint, at `out_path`.

    Raises:
        ImageBuildError: `saved_model_dir` is not a directory, the model name is not one safe
            path component, or the model holds a link out of itself, a loop, a FIFO, a device
            or a socket (or a file was swapped while it was read).
    """
    saved_model_dir = Path(saved_model_dir)
    checked_model_name(model_name)
    if not saved_model_dir.is_dir():
        raise ImageBuildError(f"Model directory {saved_model_dir} does not exist.")
    model_prefix = f"{MODEL_ROOT}/{model_name}/{int(model_version)}"
    try:
        tree = walk_model_tree(saved_model_dir)
    except UnsafeModelPath as exc:
        raise ImageBuildError(f"The model cannot be put in an image: {exc}") from exc
    dirs = [MODEL_ROOT, f"{MODEL_ROOT}/{model_name}", model_prefix, "usr", "usr/local"]
    dirs.append("usr/local/bin")
    entries = [(d, None) for d in dirs]
    entries += [(f"{model_prefix}/{entry.relative}", entry) for entry in tree]
    entries.append((ENTRYPOINT_PATH, None))
    script = entrypoint_script()
    with open(out_path, "wb") as out:
        compressed = _HashingWriter(out)
        # filename="" and mtime=0 keep the gzip header free of anything that varies per build.
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
            uncompressed = _HashingWriter(gz)
            with tarfile.open(fileobj=uncompressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name, entry in sorted(entries, key=lambda item: item[0]):
                    if name == ENTRYPOINT_PATH:
                        info = _tar_info(name, size=len(script), executable=True)
                        tar.addfile(info, io.BytesIO(script))
                    elif entry is None or entry.is_dir:
                        tar.addfile(_tar_info(name, is_dir=True))
                    else:
                        _add_model_file(tar, name, entry)
    return Layer(out_path, compressed.digest, uncompressed.digest, compressed.size)


def _add_model_file(tar: tarfile.TarFile, name: str, entry) -> None:
    try:
        f = open_entry(entry)
    except UnsafeModelPath as exc:
        raise ImageBuildError(f"The model cannot be put in an image: {exc}") from exc
    with f:
        # The size of what is open, so a file that changed size since the walk is still whole.
        size = os.fstat(f.fileno()).st_size
        info = _tar_info(name, size=size, executable=bool(entry.mode & 0o111))
        tar.addfile(info, f)


def is_host_path(uri: str) -> bool:
    """Returns True when `uri` is a path on the building host (plain path or file://)."""
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # "C:" of a Windows path


def model_labels(
    model_name: str,
    model_version: int,
    source_uri: str | None,
    base: ImageReference,
    base_digest: str,
) -> dict[str, str]:
    """Returns the image labels recording the model, its version, source artifact and base.

    `source_uri` is recorded only when it is a remote URI (gs://, s3://, https://...): a path
    on the building host says nothing to whoever pulls the image and leaks the host's layout.
    """
    labels = {
        f"{LABEL_PREFIX}.model-name": model_name,
        f"{LABEL_PREFIX}.model-version": str(model_version),
        "org.opencontainers.image.version": str(model_version),
        "org.opencontainers.image.base.name": str(base),
        "org.opencontainers.image.base.digest": base_digest,
    }
    if source_uri and not is_host_path(source_uri):
        labels[f"{LABEL_PREFIX}.model-source"] = source_uri
    return labels


def build_image_config(
    base_config: dict[str, Any],
    layer: Layer,
    *,
    model_name: str,
    model_version: int,
    labels: dict[str, str],
    port: int = DEFAULT_PORT,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Returns the new image config: the base's plus the model layer, env, entrypoint, labels.

    Raises:
        ImageBuildError: the base is not a linux/amd64 image (Cloud Run runs nothing else), or
            the model name is not one safe path component.
    """
    checked_model_name(model_name)
    platform = f"{base_config.get('os')}/{base_config.get('architecture')}"
    if platform != "linux/amd64":
        raise ImageBuildError(
            f"The base image is {platform}; Cloud Run runs linux/amd64 images only."
        )
    config = json.loads(json.dumps(base_config))
    container = config.setdefault("config", {}) or {}
    config["config"] = container
    env = {"MODEL_NAME": model_name, "MODEL_BASE_PATH": f"/{MODEL_ROOT}", **(extra_env or {})}
    kept = [e for e in container.get("Env") or [] if e.split("=", 1)[0] not in env]
    container["Env"] = kept + [f"{k}={v}" for k, v in env.items()]
    container["Entrypoint"] = [f"/{ENTRYPOINT_PATH}"]
    container["Cmd"] = None
    container["ExposedPorts"] = {f"{port}/tcp": {}}
    container["User"] = IMAGE_USER
    container["Labels"] = {**(container.get("Labels") or {}), **labels}
    config["rootfs"] = {
        "type": "layers",
        "diff_ids": [*(config.get("rootfs") or {}).get("diff_ids", []), layer.diff_id],
    }
    config["created"] = IMAGE_CREATED
    config["history"] = [
        *(config.get("history") or []),
        {
            "created": IMAGE_CREATED,
            "created_by": f"tfx-serving-ext: model {model_name} version {model_version}",
        },
    ]
    return config


def canonical_json(value: dict[str, Any]) -> bytes:
    """Returns `value` serialised deterministically (sorted keys, no whitespace)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build_manifest(
    base_manifest: Manifest, config_raw: bytes, layer: Layer, annotations: dict[str, str]
) -> tuple[bytes, str]:
    """Returns (manifest bytes, media type): the base's layers plus the model layer.

    The new manifest keeps the base's format (OCI or Docker v2) so layer media types agree.
    """
    base = base_manifest.json
    oci = base_manifest.media_type == OCI_MANIFEST
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": base_manifest.media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": len(config_raw),
            "digest": sha256_digest(config_raw),
        },
        "layers": [
            *base["layers"],
            {
                "mediaType": OCI_LAYER_GZIP if oci else DOCKER_LAYER_GZIP,
                "size": layer.size,
                "digest": layer.digest,
            },
        ],
    }
    if oci and annotations:
        manifest["annotations"] = annotations
    return canonical_json(manifest), base_manifest.media_type
