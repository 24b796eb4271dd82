"""The canary's settings: how much traffic, where the server runs, and the thresholds."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tfx_serving_ext.canary.backends import BACKENDS
from tfx_serving_ext.canary.judge import CanaryThresholds
from tfx_serving_ext.config_fields import dataclass_from_mapping


class CanaryConfigError(ValueError):
    """The canary configuration cannot be understood."""


@dataclass
class CanaryConfig:
    """How much traffic, where the server runs, and the thresholds of the judgement."""

    num_requests: int = 200
    concurrency: int = 4
    max_seconds: float = 300.0  # no new request after this long (the run then is judged)
    request_timeout_seconds: float = 30.0
    num_examples: int = 100  # distinct examples (RequestSpec.num_examples wins when set)
    batch_size: int = 1  # examples per request
    protocol: str = "grpc"
    backend: str = "auto"  # see serving.BACKENDS
    # endpoint backend: the running fleet's gRPC address: host:port, dns:///name:port (every
    # record a replica) or a comma-separated list of host:port
    endpoint_address: str = ""
    endpoint_base_path: str = ""  # endpoint backend: the volume that server polls
    # endpoint backend: the fleet's --model_config_file (default: the one model of the volume),
    # the volume's path as the server sees it (default: the same), and its declared version
    # (TF Serving reports none over its API). See canary.backends.endpoint.
    endpoint_model_config_file: str = ""
    endpoint_server_base_path: str = ""
    endpoint_server_version: str = ""
    enable_warmup: bool = True  # the server replays assets.extra warmup records on load
    # Refuse to bless unless the model ran in TF Serving itself (docker, kubernetes, endpoint),
    # never on the embedded server: see canary.server_identity.
    require_tf_serving: bool = False
    # Requests sent to each side before measuring (first calls trace graphs, fill caches).
    unmeasured_requests: int = 10
    thresholds: CanaryThresholds = field(default_factory=CanaryThresholds)

    def __post_init__(self) -> None:
        self.thresholds = CanaryThresholds.from_value(self.thresholds)
        self.unmeasured_requests = max(0, self.unmeasured_requests)
        positive = ("num_requests", "concurrency", "batch_size", "max_seconds")
        if any(getattr(self, name) <= 0 for name in positive):
            raise CanaryConfigError(f"{', '.join(positive)} must be positive")
        if self.request_timeout_seconds <= 0:
            raise CanaryConfigError("request_timeout_seconds must be positive")
        if self.protocol not in ("grpc", "rest"):
            raise CanaryConfigError(f"protocol must be 'grpc' or 'rest', got {self.protocol!r}")
        if self.backend not in BACKENDS:
            raise CanaryConfigError(f"unknown backend {self.backend!r}; choose one of {BACKENDS}")

    @classmethod
    def from_value(cls, value: CanaryConfig | Mapping[str, Any] | str | None) -> CanaryConfig:
        """Returns a config from itself, a dict, JSON, or None (the defaults).

        Raises:
            CanaryConfigError: not JSON, unknown keys or invalid values.
        """
        return dataclass_from_mapping(cls, value, what="canary settings", error=CanaryConfigError)

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as a JSON-ready dict."""
        return asdict(self)

    def to_json(self) -> str:
        """Returns the config as JSON."""
        return json.dumps(self.to_dict(), sort_keys=True)
