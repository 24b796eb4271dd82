"""Finds registry credentials: Google default credentials, a docker config file, or none.

The OCI distribution protocol authenticates in two steps: the registry answers 401 with a
`WWW-Authenticate` challenge (Basic, or Bearer with a token service `realm`), and the client
retries with Basic credentials or with a token fetched from the realm using those credentials.
This module only decides *which* username/password to present for a registry host;
`registry.RegistryClient` runs the challenge.

- `*-docker.pkg.dev`, `*.pkg.dev` (Artifact Registry) and `gcr.io` / `*.gcr.io`: Google
  application default credentials (`google.auth.default()`), presented as the user
  `oauth2accesstoken` with the access token as password, which both registries accept.
- Any other host: the docker config file (`$DOCKER_CONFIG/config.json` or
  `~/.docker/config.json`): `auths.<host>.auth` (base64 `user:password`) or a credential helper
  (`credHelpers.<host>` / `credsStore`, run as `docker-credential-<name> get`).
- Nothing found: anonymous (fine for a local registry and public pulls).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tfx_serving_ext.cloud_run.errors import RegistryAuthError

logger = logging.getLogger(__name__)

GOOGLE_TOKEN_USER = "oauth2accesstoken"
_CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The key Docker writes for Docker Hub in config.json.
_DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}


@dataclass(frozen=True)
class BasicCredentials:
    """A username and password (or token) to present to a registry or its token service."""

    username: str
    password: str

    def header(self) -> str:
        """Returns the value of an HTTP `Authorization: Basic ...` header."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def is_google_registry(host: str) -> bool:
    """Returns True for Artifact Registry (`*-docker.pkg.dev`) and Container Registry hosts."""
    host = host.split(":", 1)[0].lower()
    return host.endswith(".pkg.dev") or host == "gcr.io" or host.endswith(".gcr.io")


def google_credentials(host: str) -> BasicCredentials:
    """Returns `oauth2accesstoken` + a fresh access token from Google default credentials.

    Raises:
        RegistryAuthError: no application default credentials are configured.
    """
    import google.auth
    import google.auth.exceptions
    import google.auth.transport.requests

    try:
        creds, _ = google.auth.default(scopes=[_CLOUD_PLATFORM_SCOPE])
        creds.refresh(google.auth.transport.requests.Request())
    except google.auth.exceptions.GoogleAuthError as e:
        raise RegistryAuthError(
            f"Pushing to {host} needs Google credentials, and none were usable ({e}). Run "
            "`gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS, or run "
            "on a Google Cloud runtime with a service account that can write to the repository."
        ) from e
    return BasicCredentials(GOOGLE_TOKEN_USER, creds.token)


def docker_config_path() -> Path:
    """Returns the docker config file path ($DOCKER_CONFIG/config.json or ~/.docker/config.json)."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _config_keys(host: str) -> list[str]:
    if host in _DOCKER_HUB_HOSTS:
        return [_DOCKER_HUB_CONFIG_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"]


def _run_credential_helper(helper: str, host: str) -> BasicCredentials | None:
    program = f"docker-credential-{helper}"
    server = _DOCKER_HUB_CONFIG_KEY if host in _DOCKER_HUB_HOSTS else host
    try:
        proc = subprocess.run(
            [program, "get"], input=server, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError as e:
        raise RegistryAuthError(
            f"The docker config names the credential helper '{helper}' for {host}, but "
            f"{program} is not on PATH. Install it or remove the entry from "
            f"{docker_config_path()}."
        ) from e
    if proc.returncode != 0:
        # Helpers exit non-zero when they hold nothing for this server: fall back to anonymous.
        logger.debug("%s has no credentials for %s: %s", program, host, proc.stderr.strip())
        return None
    answer = json.loads(proc.stdout)
    return BasicCredentials(answer["Username"], answer["Secret"])


def docker_config_credentials(
    host: str, config_path: Path | None = None
) -> BasicCredentials | None:
    """Returns the credentials the docker config file holds for `host`, or None.

    Raises:
        RegistryAuthError: the file is not valid JSON, an `auth` entry is malformed, or a named
            credential helper is missing.
    """
    path = config_path or docker_config_path()
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RegistryAuthError(f"{path} is not valid JSON ({e}); fix or remove it.") from e
    keys = _config_keys(host)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _run_credential_helper(helpers[key], host)
    auths = config.get("auths") or {}
    for key in keys:
        entry = auths.get(key) or {}
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError as e:
                raise RegistryAuthError(
                    f"The `auth` entry for {key} in {path} is not base64 'user:password'."
                ) from e
            return BasicCredentials(user, password)
        if entry.get("username") and entry.get("password"):
            return BasicCredentials(entry["username"], entry["password"])
    if config.get("credsStore"):
        return _run_credential_helper(config["credsStore"], host)
    return None


def resolve_credentials(host: str) -> BasicCredentials | None:
    """Returns the credentials to present to `host`; None means anonymous.

    Google registries use Google default credentials unless the docker config holds an
    explicit entry for them (e.g. a `gcloud` credential helper or a JSON key login).
    """
    explicit = docker_config_credentials(host)
    if explicit is not None:
        return explicit
    if is_google_registry(host):
        return google_credentials(host)
    return None
