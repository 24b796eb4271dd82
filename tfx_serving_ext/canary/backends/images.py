"""The TF Serving image(s) a ServingSpec names, through TFX InfraValidator's `serving_bins`.

`serving_bins.parse_serving_binaries` gives one `TensorFlowServing` binary per tag and per digest
of `ServingSpec.tensorflow_serving` (InfraValidator validates the model against each); before
that, every reference is checked against Docker's reference grammar, so that a typo is named
before any container starts or any pod is scheduled.
"""

from __future__ import annotations

import re

from tfx_serving_ext.canary.backends.base import BackendError

# Docker's reference grammar (distribution/reference): a repository of lowercase components,
# optionally behind a registry host[:port]; a tag of at most 128 word characters, dots and
# dashes; a digest `algorithm:hex` (sha256: 64 hex digits).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(
    rf"^(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_SHA256_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def serving_binaries(serving_spec) -> list:
    """Returns one InfraValidator `TensorFlowServing` binary per tag and digest of the spec.

    Every reference is validated first, so that a typo is named before any container starts.

    Raises:
        BackendError: the spec names no tensorflow_serving binary, no tag or digest, or an
            image name, tag or digest Docker would refuse.
    """
    from tfx.components.infra_validator import serving_bins

    if serving_spec is None or serving_spec.WhichOneof("serving_binary") != "tensorflow_serving":
        raise BackendError(
            "ServingSpec.tensorflow_serving has no tags or digests: set e.g. "
            "tensorflow_serving=TensorFlowServing(tags=['2.19.1'])"
        )
    config = serving_spec.tensorflow_serving
    if config.image_name and not _REPOSITORY_RE.match(config.image_name):
        raise BackendError(
            f"ServingSpec.tensorflow_serving.image_name {config.image_name!r} is not a Docker "
            "repository name (lowercase, e.g. 'tensorflow/serving' or "
            "'registry.example:5000/serving'); put tags in `tags` and digests in `digests`"
        )
    for tag in config.tags:
        if not _TAG_RE.match(tag):
            raise BackendError(
                f"ServingSpec.tensorflow_serving.tags: {tag!r} is not a Docker tag (at most 128 "
                "letters, digits, '_', '.', '-'; a digest goes into `digests`)"
            )
    for digest in config.digests:
        if not _DIGEST_RE.match(digest) or (
            digest.startswith("sha256:") and not _SHA256_RE.match(digest)
        ):
            raise BackendError(
                f"ServingSpec.tensorflow_serving.digests: {digest!r} is not an image digest "
                "(e.g. 'sha256:' and 64 lowercase hex digits)"
            )
    binaries = serving_bins.parse_serving_binaries(serving_spec)
    if not binaries:
        raise BackendError(
            "ServingSpec.tensorflow_serving has no tags or digests: set e.g. "
            "tensorflow_serving=TensorFlowServing(tags=['2.19.1'])"
        )
    return binaries


def serving_image(serving_spec) -> str:
    """Returns the first image the ServingSpec names (`serving_binaries` gives every one).

    Raises:
        BackendError: as `serving_binaries`.
    """
    return serving_binaries(serving_spec)[0].image
