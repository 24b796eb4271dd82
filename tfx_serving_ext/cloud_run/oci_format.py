"""What the OCI image format says: media types, image references, manifests and digests.

Parsing only, no network: `registry.RegistryClient` fetches and stores what these describe,
and `image` builds layers and manifests with them.

Usage:
    ref = ImageReference.parse("tensorflow/serving:2.19.1")
    ref.registry, ref.repository, ref.reference  # registry-1.docker.io, library/serving, 2.19.1
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from tfx_serving_ext.cloud_run.errors import ImageReferenceError, RegistryError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
IMAGE_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_MANIFESTS = (OCI_INDEX, DOCKER_MANIFEST_LIST)

DOCKER_HUB_REGISTRY = "registry-1.docker.io"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference: `registry/repository[:tag][@digest]`."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Returns the reference parsed with Docker's rules (docker.io and `library/` implied).

        Raises:
            ImageReferenceError: the text is not an image reference.
        """
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _DIGEST_RE.match(digest):
                raise ImageReferenceError(f"'{text}': the digest must be sha256:<64 hex digits>.")
        tag = None
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, remainder
        else:
            registry, repository = "docker.io", rest
        if registry in ("docker.io", "index.docker.io"):
            registry = DOCKER_HUB_REGISTRY
            if "/" not in repository:
                repository = f"library/{repository}"
        if not repository or not re.match(r"^[a-z0-9]+([._/-][a-z0-9]+|__)*$", repository):
            raise ImageReferenceError(
                f"'{text}' is not an image reference: expected registry/repository[:tag] with a "
                "lowercase repository path, e.g. us-central1-docker.pkg.dev/proj/repo/model:v1."
            )
        if tag is None and digest is None:
            tag = "latest"
        return cls(registry, repository, tag, digest)

    @property
    def reference(self) -> str:
        """Returns what to put after /manifests/: the digest if known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> ImageReference:
        """Returns this reference pinned to `digest` (tag dropped: digests are immutable)."""
        return ImageReference(self.registry, self.repository, None, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry returned it: exact bytes, media type and digest."""

    media_type: str
    raw: bytes
    digest: str

    @property
    def json(self) -> dict[str, Any]:
        """Returns the parsed manifest."""
        return json.loads(self.raw)


def sha256_digest(data: bytes) -> str:
    """Returns `sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pick_platform(index: dict[str, Any], os_name: str = "linux", arch: str = "amd64") -> str:
    """Returns the digest of the manifest for `os_name/arch` in an OCI index or manifest list.

    Raises:
        RegistryError: the index has no manifest for that platform.
    """
    offered = []
    for entry in index.get("manifests", []):
        platform = entry.get("platform") or {}
        offered.append(f"{platform.get('os')}/{platform.get('architecture')}")
        if platform.get("os") == os_name and platform.get("architecture") == arch:
            return entry["digest"]
    raise RegistryError(
        f"The multi-arch image has no {os_name}/{arch} manifest (it offers {offered}); Cloud Run "
        f"runs {os_name}/{arch} only: choose a base image built for it."
    )
