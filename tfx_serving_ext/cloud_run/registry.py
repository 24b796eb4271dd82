"""Returns images from and puts images into a registry over the OCI distribution API (no daemon).

A small client over `requests` for the part of the distribution spec an image build needs:
manifests (OCI and Docker v2 image manifests, OCI indexes and Docker manifest lists, with
linux/amd64 picked from a multi-arch index), blob existence checks, blob download, blob upload
(one monolithic PUT for small blobs, PATCH chunks for large ones) and cross-repository mounts.
Authentication follows the registry's 401 challenge (Basic or Bearer token), with credentials
from `auth.resolve_credentials` (looked up only when the registry asks). Media types, image
references and manifests are parsed in `oci_format` (re-exported here).

Usage:
    client = RegistryClient("us-central1-docker.pkg.dev")
    manifest = client.get_manifest("my-project/models/penguin", "latest")
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import IO
from urllib.parse import urlencode, urljoin, urlparse

import requests

from tfx_serving_ext.cloud_run import auth
from tfx_serving_ext.cloud_run.errors import RegistryAuthError, RegistryError
from tfx_serving_ext.cloud_run.oci_format import (
    DOCKER_CONFIG,
    DOCKER_HUB_REGISTRY,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IMAGE_MANIFESTS,
    INDEX_MANIFESTS,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    ImageReference,
    Manifest,
    pick_platform,
    sha256_digest,
)

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_HUB_REGISTRY",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "IMAGE_MANIFESTS",
    "INDEX_MANIFESTS",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "ImageReference",
    "Manifest",
    "RegistryClient",
    "pick_platform",
    "sha256_digest",
]

logger = logging.getLogger(__name__)

# Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size.
DEFAULT_CHUNK_SIZE = 64 * 1024 * 1024
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, params = header.strip().partition(" ")
    values = dict(re.findall(r'(\w+)="([^"]*)"', params))
    return scheme.lower(), values


class RegistryClient:
    """Talks the OCI distribution API to one registry host.

    Args:
        registry: host[:port] of the registry.
        insecure: use plain HTTP; defaults to True only for localhost / 127.0.0.1.
        credentials: fixed credentials; by default `auth.resolve_credentials(registry)` is
            consulted the first time the registry answers 401.
        chunk_size: blobs larger than this are uploaded in PATCH chunks of this size.
        timeout: seconds for each HTTP request.
    """

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool | None = None,
        credentials: auth.BasicCredentials | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float = 300.0,
    ) -> None:
        self.registry = registry
        if insecure is None:
            insecure = registry.split(":")[0] in _LOCAL_HOSTS or registry.startswith("[::1]")
        self.base_url = f"{'http' if insecure else 'https'}://{registry}"
        self.chunk_size = chunk_size
        self.timeout = timeout
        self._credentials = credentials
        self._credentials_resolved = credentials is not None
        # The last Authorization header that worked; a 401 with a new scope replaces it.
        self._authorization: str | None = None
        self._session = requests.Session()

    # --- transport -------------------------------------------------------------------------

    def _get_credentials(self) -> auth.BasicCredentials | None:
        if not self._credentials_resolved:
            self._credentials = auth.resolve_credentials(self.registry)
            self._credentials_resolved = True
        return self._credentials

    def _authorize(self, response: requests.Response) -> str:
        header = response.headers.get("WWW-Authenticate", "")
        scheme, params = _parse_challenge(header)
        creds = self._get_credentials()
        if scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"{self.registry} requires a login and no credentials were found; run "
                    f"`docker login {self.registry}` (writes {auth.docker_config_path()})."
                )
            return creds.header()
        if scheme != "bearer" or "realm" not in params:
            raise RegistryAuthError(f"{self.registry} sent an unsupported challenge: {header!r}")
        query = {k: v for k, v in params.items() if k == "service"}
        scopes = params.get("scope", "").split()
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urlencode(query)
        if scopes:
            url += "&" + urlencode([("scope", s) for s in scopes])
        headers = {"Authorization": creds.header()} if creds else {}
        token_response = self._session.get(url, headers=headers, timeout=self.timeout)
        if token_response.status_code in (401, 403):
            raise RegistryAuthError(
                f"The token service of {self.registry} refused "
                f"{'the credentials' if creds else 'anonymous access'} for scope {scopes} "
                f"(HTTP {token_response.status_code}). Check the login and that the account may "
                "pull and push this repository."
            )
        token_response.raise_for_status()
        body = token_response.json()
        return "Bearer " + (body.get("token") or body["access_token"])

    def _request(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        headers: dict[str, str] | None = None,
        data: bytes | IO[bytes] | None = None,
        stream: bool = False,
        what: str,
    ) -> requests.Response:
        url = urljoin(self.base_url, url)
        headers = dict(headers or {})
        auth_header = self._authorization
        for attempt in range(2):
            if auth_header:
                headers["Authorization"] = auth_header
            if hasattr(data, "seek"):
                data.seek(0)
            response = self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                stream=stream,
                timeout=self.timeout,
                allow_redirects=True,
            )
            if response.status_code == 401 and attempt == 0:
                auth_header = self._authorize(response)
                self._authorization = auth_header
                continue
            break
        if response.status_code not in ok:
            raise RegistryError(
                f"{what}: {method.upper()} {url} answered HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response

    def _repo_url(self, repository: str, suffix: str) -> str:
        return f"/v2/{repository}/{suffix}"

    # --- API -------------------------------------------------------------------------------

    def check(self) -> None:
        """Returns nothing once `GET /v2/` answers (authenticating if asked).

        Raises:
            RegistryError: the endpoint is not a v2 registry.
        """
        self._request("get", "/v2/", what=f"Checking registry {self.registry}")

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        """Returns the manifest (image or index) stored under a tag or digest.

        Raises:
            RegistryError: it does not exist or its digest does not match the reference.
        """
        accept = ", ".join((*IMAGE_MANIFESTS, *INDEX_MANIFESTS))
        response = self._request(
            "get",
            self._repo_url(repository, f"manifests/{reference}"),
            headers={"Accept": accept},
            what=f"Fetching manifest {self.registry}/{repository}:{reference}",
        )
        raw = response.content
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"Manifest {reference} arrived with digest {digest}.")
        media_type = response.headers.get("Content-Type", "").split(";")[0]
        media_type = json.loads(raw).get("mediaType") or media_type
        return Manifest(media_type, raw, digest)

    def get_image_manifest(
        self, repository: str, reference: str, os_name: str = "linux", arch: str = "amd64"
    ) -> Manifest:
        """Returns the image manifest, resolving a multi-arch index to `os_name/arch`."""
        manifest = self.get_manifest(repository, reference)
        if manifest.media_type in INDEX_MANIFESTS:
            digest = pick_platform(manifest.json, os_name, arch)
            logger.info("Picked %s/%s manifest %s from the index", os_name, arch, digest)
            manifest = self.get_manifest(repository, digest)
        if manifest.media_type not in IMAGE_MANIFESTS:
            raise RegistryError(
                f"{self.registry}/{repository}:{reference} has media type "
                f"{manifest.media_type!r}; expected one of {IMAGE_MANIFESTS} (Docker schema 1 "
                "images are not supported: re-push the image with a current client)."
            )
        return manifest

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """Returns the digest of the manifest after storing it under `reference`."""
        response = self._request(
            "put",
            self._repo_url(repository, f"manifests/{reference}"),
            ok=(201, 200),
            headers={"Content-Type": media_type},
            data=raw,
            what=f"Pushing manifest {self.registry}/{repository}:{reference}",
        )
        digest = sha256_digest(raw)
        answered = response.headers.get("Docker-Content-Digest")
        if answered and answered != digest:
            raise RegistryError(f"The registry stored the manifest as {answered}, not {digest}.")
        return digest

    def blob_exists(self, repository: str, digest: str) -> bool:
        """Returns True when the repository already holds the blob."""
        response = self._request(
            "head",
            self._repo_url(repository, f"blobs/{digest}"),
            ok=(200, 404),
            what=f"Checking blob {digest}",
        )
        return response.status_code == 200

    def get_blob(self, repository: str, digest: str) -> bytes:
        """Returns a (small) blob's bytes, verified against its digest."""
        response = self._request(
            "get",
            self._repo_url(repository, f"blobs/{digest}"),
            what=f"Fetching blob {self.registry}/{repository}@{digest}",
        )
        if sha256_digest(response.content) != digest:
            raise RegistryError(f"Blob {digest} arrived with different content; retry the pull.")
        return response.content

    def iter_blob(self, repository: str, digest: str) -> Iterator[bytes]:
        """Returns an iterator over a blob's bytes in chunks (for large layers)."""
        response = self._request(
            "get",
            self._repo_url(repository, f"blobs/{digest}"),
            stream=True,
            what=f"Fetching blob {self.registry}/{repository}@{digest}",
        )
        return response.iter_content(chunk_size=1024 * 1024)

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Returns True when the registry mounted the blob from another repository of its own.

        A registry that cannot mount answers 202 with an upload session instead; that session
        is abandoned (uncommitted sessions expire) and the caller uploads the blob.
        """
        query = urlencode({"mount": digest, "from": from_repository})
        response = self._request(
            "post",
            self._repo_url(repository, f"blobs/uploads/?{query}"),
            ok=(201, 202),
            what=f"Mounting blob {digest} from {from_repository}",
        )
        return response.status_code == 201

    def _upload_location(self, response: requests.Response) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"{self.registry} started an upload without a Location header.")
        return urljoin(self.base_url, location)

    @staticmethod
    def _with_query(url: str, **params: str) -> str:
        parsed = urlparse(url)
        query = parsed.query + ("&" if parsed.query else "") + urlencode(params)
        return parsed._replace(query=query).geturl()

    def upload_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        read: Callable[[int], bytes],
    ) -> None:
        """Returns nothing once the blob is stored: one PUT if small, PATCH chunks otherwise.

        Args:
            repository: target repository.
            digest: the blob's sha256 digest (the registry verifies it).
            size: the blob's length in bytes.
            read: returns the next up to n bytes of the blob (like a file's `read`).
        """
        start = self._request(
            "post",
            self._repo_url(repository, "blobs/uploads/"),
            ok=(202,),
            what=f"Starting upload of {digest}",
        )
        location = self._upload_location(start)
        if size <= self.chunk_size:
            self._request(
                "put",
                self._with_query(location, digest=digest),
                ok=(201,),
                headers={"Content-Type": "application/octet-stream"},
                data=read(size),
                what=f"Uploading blob {digest} ({size} bytes)",
            )
            return
        offset = 0
        while offset < size:
            chunk = read(self.chunk_size)
            if not chunk:
                raise RegistryError(f"Blob {digest} ended at {offset} of {size} bytes.")
            response = self._request(
                "patch",
                location,
                ok=(202,),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Length": str(len(chunk)),
                },
                data=chunk,
                what=f"Uploading chunk {offset} of blob {digest}",
            )
            location = self._upload_location(response)
            offset += len(chunk)
        self._request(
            "put",
            self._with_query(location, digest=digest),
            ok=(201,),
            headers={"Content-Length": "0"},
            what=f"Completing upload of blob {digest}",
        )
        logger.debug("Uploaded %s in chunks (%d bytes)", digest, size)
