"""Exception types of the Cloud Run destination (image build, registry push, deployment)."""

from __future__ import annotations


class CloudRunError(RuntimeError):
    """Base class: something in the Cloud Run destination failed; the message says what to do."""


class ImageReferenceError(CloudRunError, ValueError):
    """An image reference string cannot be parsed."""


class RegistryError(CloudRunError):
    """The registry refused a request or answered something that is not a valid image."""


class RegistryAuthError(RegistryError):
    """The registry asked for credentials that could not be found or were rejected."""


class ImageBuildError(CloudRunError):
    """The model image cannot be assembled (bad model directory, unusable base image)."""


class DeployError(CloudRunError):
    """The Cloud Run Admin API rejected a request or an operation finished with an error."""


class DeployTimeout(DeployError):
    """A Cloud Run long-running operation did not finish within the configured timeout."""
