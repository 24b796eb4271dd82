"""Returns where and how to push a model onto a serving volume: `VolumePushConfig`.

Usage:
    config = VolumePushConfig.from_json('{"base_directory": "/serving/m", "keep_versions": 3}')
    config.to_json()  # the ServingPusher's `push_destination`
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tfx_serving_ext.config_fields import dataclass_from_mapping
from tfx_serving_ext.protocol.model_tree import validate_model_name

# Label targets besides a literal version number.
NEW_VERSION = "new"
PREVIOUS_VERSION = "previous"


class PushConfigError(ValueError):
    """The push configuration is invalid; the message says which field and why."""


@dataclass
class VolumePushConfig:
    """Where and how to push a model onto a serving volume.

    Attributes:
        base_directory: the directory TF Serving's `model_base_path` points at.
        model_name: the model's name on the server and in the model config file.
        model_config_file: text-format ModelServerConfig to maintain labels in (optional).
        keep_versions: keep the newest N versions (plus served/labelled ones); 0 keeps all.
        version_labels: {label: "new" | "previous" | version number}, e.g.
            {"canary": "new", "stable": "previous"}. Needs `server_address` and
            `model_config_file`: a label is only set once the server reports its version
            AVAILABLE.
        server_address: gRPC `host:port` or REST `http://host:port` of the server to verify on.
        server_protocol: "grpc" or "rest".
        verify_timeout_seconds: how long to wait for the new version to become AVAILABLE.
        rollback_on_failure: remove the new version again if it fails to load or times out.
    """

    base_directory: str
    model_name: str = "model"
    model_config_file: str | None = None
    keep_versions: int = 0
    version_labels: dict[str, str | int] = field(default_factory=dict)
    server_address: str | None = None
    server_protocol: str = "grpc"
    verify_timeout_seconds: float = 300.0
    rollback_on_failure: bool = True

    def __post_init__(self) -> None:
        if not self.base_directory:
            raise PushConfigError("base_directory is required: the server's model_base_path")
        validate_model_name(self.model_name)
        if self.keep_versions < 0:
            raise PushConfigError(
                f"keep_versions must be >= 0 (0 keeps all), not {self.keep_versions}"
            )
        if self.server_protocol not in ("grpc", "rest"):
            raise PushConfigError(
                f"server_protocol must be 'grpc' or 'rest', not {self.server_protocol!r}"
            )
        if self.verify_timeout_seconds <= 0:
            raise PushConfigError("verify_timeout_seconds must be positive")
        for label, target in self.version_labels.items():
            if not (target in (NEW_VERSION, PREVIOUS_VERSION) or str(target).isdigit()):
                raise PushConfigError(
                    f"version_labels[{label!r}] = {target!r}: use 'new', 'previous' or a version"
                )
        if self.version_labels and not (self.server_address and self.model_config_file):
            raise PushConfigError(
                "version_labels need model_config_file (where labels live) and server_address "
                "(TF Serving refuses a label on a version that is not AVAILABLE)"
            )

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any]) -> VolumePushConfig:
        """Returns the config parsed from a JSON object (string or dict); unknown keys raise.

        Raises:
            PushConfigError: not JSON, unknown keys, a missing base_directory or invalid values.
            UnsafeModelPath: the model name cannot be a directory name.
        """
        return dataclass_from_mapping(
            cls, text, what="serving_volume push_destination settings", error=PushConfigError
        )

    def to_json(self) -> str:
        """Returns the config as a JSON object string (the component's parameter format)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)
