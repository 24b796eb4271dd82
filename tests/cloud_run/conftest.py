"""Fixtures for the Cloud Run destination: a real registry on loopback and a synthetic base image.

The registry is Debian's `docker-registry` (the CNCF Distribution registry) started with a
throwaway config: filesystem storage in a temp dir, 127.0.0.1 only, no auth.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REGISTRY_BINARY = "/usr/bin/docker-registry"
INSTALL_HINT = (
    "Debian's docker-registry package is required for the Cloud Run image tests "
    "(a real OCI registry on loopback): run `apt-get update && apt-get install -y "
    "docker-registry` (as root)."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalRegistry:
    host: str  # 127.0.0.1:<port>
    root: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def _start_registry(root: Path) -> tuple[subprocess.Popen, LocalRegistry]:
    binary = shutil.which("docker-registry") or REGISTRY_BINARY
    if not Path(binary).exists():
        from tests.containers import requirements

        # Installed here when root with apt (as `make test` does for every test's needs).
        requirements.ensure_installed(requirements.REGISTRY[:1])
        binary = shutil.which("docker-registry") or REGISTRY_BINARY
    if not Path(binary).exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    port = free_port()
    storage = root / "storage"
    storage.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(root / "registry.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    registry = LocalRegistry(f"127.0.0.1:{port}", root)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited: {(root / 'registry.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{registry.url}/v2/", timeout=1).status_code == 200:
                return proc, registry
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("docker-registry did not answer /v2/ within 30 s")


@pytest.fixture(scope="session")
def local_registry(tmp_path_factory) -> Iterator[LocalRegistry]:
    """A running docker-registry on 127.0.0.1, stopped at the end of the session."""
    proc, registry = _start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield registry
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def second_registry(tmp_path_factory) -> Iterator[LocalRegistry]:
    """Another registry, for pushing to a registry that does not hold the base image."""
    proc, registry = _start_registry(tmp_path_factory.mktemp("registry2"))
    try:
        yield registry
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- synthetic base images --------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _put_blob(registry: LocalRegistry, repo: str, data: bytes) -> str:
    digest = _digest(data)
    start = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    if location.startswith("/"):
        location = registry.url + location
    sep = "&" if "?" in location else "?"
    done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=10)
    assert done.status_code == 201, done.text
    return digest


def _put_manifest(registry: LocalRegistry, repo: str, ref: str, manifest: dict) -> str:
    raw = json.dumps(manifest).encode()
    r = requests.put(
        f"{registry.url}/v2/{repo}/manifests/{ref}",
        data=raw,
        headers={"Content-Type": manifest["mediaType"]},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return _digest(raw)


def _tiny_layer(text: str) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("etc/base-release")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), _digest(raw)


@dataclass
class BaseImage:
    reference: str  # host/repo:tag
    layer_digest: str
    config: dict


def push_base_image(
    registry: LocalRegistry,
    repo: str,
    tag: str,
    *,
    oci: bool = False,
    multi_arch: bool = False,
    arch: str = "amd64",
) -> BaseImage:
    """Pushes a tiny image that looks like tensorflow/serving (entrypoint, env, one layer)."""
    layer, diff_id = _tiny_layer(f"base {repo}:{tag} {arch}\n")
    layer_digest = _put_blob(registry, repo, layer)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "MODEL_NAME=model",
                "MODEL_BASE_PATH=/models",
            ],
            "Entrypoint": ["/usr/bin/tf_serving_entrypoint.sh"],
            "ExposedPorts": {"8500/tcp": {}, "8501/tcp": {}},
            "Labels": {"base.label": "kept"},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "synthetic base"}],
    }
    config_raw = json.dumps(config).encode()
    config_digest = _put_blob(registry, repo, config_raw)
    media = (
        "application/vnd.oci.image.manifest.v1+json"
        if oci
        else "application/vnd.docker.distribution.manifest.v2+json"
    )
    layer_media = (
        "application/vnd.oci.image.layer.v1.tar+gzip"
        if oci
        else "application/vnd.docker.image.rootfs.diff.tar.gzip"
    )
    config_media = (
        "application/vnd.oci.image.config.v1+json"
        if oci
        else "application/vnd.docker.container.image.v1+json"
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": media,
        "config": {"mediaType": config_media, "size": len(config_raw), "digest": config_digest},
        "layers": [{"mediaType": layer_media, "size": len(layer), "digest": layer_digest}],
    }
    if not multi_arch:
        _put_manifest(registry, repo, tag, manifest)
        return BaseImage(f"{registry.host}/{repo}:{tag}", layer_digest, config)
    # An index listing arm64 first, so picking the first entry would be wrong.
    arm = push_base_image(registry, repo, f"{tag}-arm64", oci=oci, arch="arm64")
    arm_manifest = requests.get(
        f"{registry.url}/v2/{repo}/manifests/{tag}-arm64", headers={"Accept": media}, timeout=10
    ).content
    amd_digest = _put_manifest(registry, repo, f"{tag}-amd64", manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": (
            "application/vnd.oci.image.index.v1+json"
            if oci
            else "application/vnd.docker.distribution.manifest.list.v2+json"
        ),
        "manifests": [
            {
                "mediaType": media,
                "size": len(arm_manifest),
                "digest": _digest(arm_manifest),
                "platform": {"architecture": "arm64", "os": "linux"},
            },
            {
                "mediaType": media,
                "size": len(json.dumps(manifest).encode()),
                "digest": amd_digest,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
        ],
    }
    _put_manifest(registry, repo, tag, index)
    assert arm.layer_digest != layer_digest
    return BaseImage(f"{registry.host}/{repo}:{tag}", layer_digest, config)


@pytest.fixture(scope="session")
def tiny_saved_model(tmp_path_factory) -> Path:
    """A small real SavedModel (y = 2x + 1) written by TensorFlow."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("tiny_model") / "saved"

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 2.0 * x + 1.0}

    module = Affine()
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
    return out
