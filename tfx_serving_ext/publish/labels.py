"""Moving version labels on a fleet: write the model config file, wait until every replica routes.

TF Serving re-reads its `--model_config_file` every `--model_config_file_poll_wait_seconds`, and
refuses the whole file when a label points at a version that is not AVAILABLE (unless
`--allow_version_labels_for_unavailable_models`), so a label is only moved to a version every
replica reports AVAILABLE, and a move counts once each replica answers requests for the label
with that version (GetModelMetadata echoes the version a label resolved to).

Usage:
    move_labels(fleet, "/serving/models.config", "penguin", {"canary": 8}, timeout=60)
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from tfx_serving_ext.protocol import model_config
from tfx_serving_ext.publish.fleet import Fleet

logger = logging.getLogger(__name__)


class LabelNotRouted(RuntimeError):
    """A replica did not route a label to its new version in time; says which and what it saw."""


def label_version(client: Any, model_name: str, label: str) -> int | None:
    """Returns the version the server answers for `label` (None: it does not know the label)."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    from tfx_serving_ext.protocol.errors import ServingError

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model_name
    request.model_spec.version_label = label
    try:
        response = client.raw_metadata(request)
    except ServingError:
        return None
    return response.model_spec.version.value if response.model_spec.HasField("version") else None


def wait_until_routed(
    fleet: Fleet, model_name: str, labels: dict[str, int], timeout: float
) -> None:
    """Returns once every replica answers each label with its version.

    Raises:
        LabelNotRouted: not within `timeout` seconds (the replica's config poll is off, or it
            refused the file).
    """
    deadline = time.monotonic() + timeout
    for replica in fleet.replicas:
        for label, version in labels.items():
            while True:
                seen = label_version(replica.client, model_name, label)
                if seen == version:
                    break
                if time.monotonic() >= deadline:
                    raise LabelNotRouted(
                        f"replica {replica.address} still answers label {label!r} with "
                        f"{'no version' if seen is None else f'version {seen}'} after "
                        f"{timeout:g}s, not {version}: does it poll its model config file "
                        "(--model_config_file_poll_wait_seconds)?"
                    )
                time.sleep(0.1)


def move_labels(
    fleet: Fleet,
    config_file: str | os.PathLike,
    model_name: str,
    labels: dict[str, int],
    *,
    timeout: float,
    remove: tuple[str, ...] = (),
) -> dict[str, int]:
    """Returns the model's labels after moving `labels` in the file and seeing every replica
    route them.

    Raises:
        ModelConfigError: the file cannot be read or has no entry for the model.
        LabelNotRouted: see `wait_until_routed`.
    """
    result = model_config.set_version_labels(config_file, model_name, labels, remove=remove)
    wait_until_routed(fleet, model_name, labels, timeout)
    logger.info("Labels %s routed on %d replicas", labels, len(fleet.replicas))
    return result
