"""Which model server a canary ran on: what the report and the blessing say blessed the model.

A blessing is a promise that the model loads and answers in TF Serving; it is only as good as
the server that gave it. The embedded server runs the model under this process's TensorFlow
(Python), not TF Serving's C++ build, so a missing kernel or op there is not caught: the report
says so, and `require_tf_serving` refuses such a blessing.

Example:
    identity = describe_server("docker", serving_spec)
    identity["description"]  # 'TF Serving image tensorflow/serving@sha256:...'
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# Backends on which the model ran in TF Serving itself (its image, or a running server).
TF_SERVING_BACKENDS = frozenset({"docker", "kubernetes", "endpoint"})


def describe_server(
    backend_name: str,
    serving_spec=None,
    *,
    endpoint_address: str = "",
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Returns who served the canary: kind, whether it is TF Serving, version, image or address.

    Args:
        backend_name: the concrete backend (`backends.choose_backend`'s answer).
        serving_spec: infra_validator_pb2.ServingSpec (the image of docker and kubernetes).
        endpoint_address: the endpoint backend's gRPC address.
        facts: what the backend itself recorded (`ModelServerBackend.identity()`): the image,
            its digest and ID the container ran, or the endpoint's address and version; they
            win over what the ServingSpec names.

    Returns:
        A JSON-ready dict with `kind`, `tf_serving` (bool), `description` (one line), and
        `tensorflow_version` (embedded), `image`, `image_digest` (None when it cannot be known)
        and `image_id` (docker), or `address`, `replicas` (when resolved) and
        `server_version` (endpoint).
    """
    facts = facts or {}
    identity: dict[str, Any] = {"kind": backend_name, "tf_serving": False}
    if backend_name in ("embedded", "embedded-subprocess"):
        import tensorflow as tf

        identity["tensorflow_version"] = tf.__version__
        identity["description"] = (
            f"the embedded server ({backend_name}) under TensorFlow {tf.__version__} (Python), "
            "not TF Serving"
        )
        return identity
    identity["tf_serving"] = backend_name in TF_SERVING_BACKENDS
    if backend_name == "endpoint":
        address = facts.get("address") or endpoint_address
        version = facts.get("server_version")
        identity["address"] = address
        if facts.get("replicas"):
            identity["replicas"] = list(facts["replicas"])  # each got the canary config
        identity["server_version"] = version
        identity["description"] = f"the TF Serving at {address} " + (
            f"(version {version}, as declared)"
            if version
            else "(version not declared; TF Serving reports none)"
        )
        return identity
    from tfx_serving_ext.canary.backends.docker import serving_image

    image = facts.get("image") or serving_image(serving_spec)
    identity["image"] = image
    identity["image_digest"] = facts.get("image_digest") or image_digest(
        image, serving_spec, backend_name
    )
    if facts.get("image_id"):
        identity["image_id"] = facts["image_id"]
    shown = image if "@" in image else f"{image} ({identity['image_digest'] or 'digest unknown'})"
    identity["description"] = f"TF Serving image {shown} on {backend_name}"
    return identity


def image_digest(image: str, serving_spec, backend_name: str) -> str | None:
    """Returns the repository digest (`sha256:...`) the image ran with, or None when unknown.

    A reference by digest is its own answer; for a tag, the local Docker daemon knows which
    digest the pulled image has in the tag's repository (`docker.registry_digest`; None when
    the image has none there). Kubernetes pulls on its node: unknown here.
    """
    if "@" in image:
        return image.rsplit("@", 1)[1]
    if backend_name != "docker":
        return None
    from tfx_serving_ext.canary.backends.docker import make_docker_client, registry_digest

    try:
        client = make_docker_client(serving_spec.local_docker)
        try:
            attrs = client.images.get(image).attrs
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - the identity is recorded even when the daemon is gone
        logger.info("Could not read the digest of %s", image, exc_info=True)
        return None
    return registry_digest(image, attrs)


def tf_serving_required_reason(identity: dict[str, Any]) -> str:
    """Returns why a run on a server that is not TF Serving is refused under require_tf_serving."""
    return (
        f"TF Serving was required (require_tf_serving) but the canary ran on "
        f"{identity.get('description') or identity.get('kind')}; a kernel, op or dtype TF "
        "Serving lacks would not have been caught. Run it on the docker, kubernetes or endpoint "
        "backend (ServingSpec.local_docker / kubernetes, or CanaryConfig.endpoint_address)"
    )
