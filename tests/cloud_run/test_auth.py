"""Which credentials a registry host gets: docker config entries, helpers, Google, anonymous."""

from __future__ import annotations

import base64
import json

import pytest

from tfx_serving_ext.cloud_run import auth
from tfx_serving_ext.cloud_run.errors import RegistryAuthError


def test_docker_config_auth_entry_and_credential_helper(tmp_path, monkeypatch):
    helper = tmp_path / "docker-credential-fake"
    helper.write_text(
        '#!/bin/sh\nread server\nprintf \'{"Username": "helper-user", "Secret": "s3cret-%s"}\' '
        '"$server"\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "registry.example:5000": {"auth": base64.b64encode(b"alice:pw:x").decode()},
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"bob:hub").decode()},
                },
                "credHelpers": {"europe-docker.pkg.dev": "fake"},
            }
        )
    )
    assert auth.resolve_credentials("registry.example:5000") == auth.BasicCredentials(
        "alice", "pw:x"
    )
    assert auth.resolve_credentials("registry-1.docker.io") == auth.BasicCredentials("bob", "hub")
    # An explicit helper for a Google registry wins over application default credentials.
    assert auth.resolve_credentials("europe-docker.pkg.dev") == auth.BasicCredentials(
        "helper-user", "s3cret-europe-docker.pkg.dev"
    )
    assert auth.resolve_credentials("127.0.0.1:5000") is None  # anonymous


def test_google_registry_without_credentials_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config file
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    assert auth.is_google_registry("us-central1-docker.pkg.dev")
    assert auth.is_google_registry("eu.gcr.io") and not auth.is_google_registry("ghcr.io")
    with pytest.raises(RegistryAuthError, match="application-default login"):
        auth.resolve_credentials("us-central1-docker.pkg.dev")


def test_missing_credential_helper_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "absent-helper"}))
    with pytest.raises(RegistryAuthError, match="docker-credential-absent-helper is not on PATH"):
        auth.resolve_credentials("registry.example")
