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
from tfx_serving_ext.publish.fleet import FleetError, check_fleet_entry

# Label targets besides a literal version number.
NEW_VERSION = "new"
PREVIOUS_VERSION = "previous"


class PushConfigError(ValueError):
    """The push configuration is invalid; the message says which field and why."""


@dataclass
class WatchThresholds:
    """When the post-push watch rolls back, in the form of the canary's thresholds.

    The new version is compared with the previous one over the same window: replayed requests
    sent to each version explicitly, and each replica's request metrics after the swap against
    its figures before it.

    Attributes:
        max_error_rate: how far the new version's error rate may exceed the previous one's
            (0.01: one percentage point; 0 allows no extra error at all).
        max_p99_ratio: the new p99 latency may be at most this multiple of the previous p99...
        ratio_slack_ms: ...plus this many milliseconds (small latencies are noisy).
        max_p99_latency_ms: an absolute ceiling on the new p99 (None: no ceiling).
        min_requests: the fewest requests to the new version before latency is judged and
            before an error rate below 100% rolls back.
    """

    max_error_rate: float = 0.01
    max_p99_ratio: float = 2.0
    ratio_slack_ms: float = 2.0
    max_p99_latency_ms: float | None = None
    min_requests: int = 10

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_rate <= 1:
            raise PushConfigError(
                f"watch_thresholds.max_error_rate must be within [0, 1], not {self.max_error_rate}"
            )
        if self.max_p99_ratio < 1:
            raise PushConfigError(
                f"watch_thresholds.max_p99_ratio must be >= 1, not {self.max_p99_ratio}"
            )
        if self.min_requests < 1:
            raise PushConfigError("watch_thresholds.min_requests must be >= 1")


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
        fleet: the replicas to verify on instead of `server_address`: addresses (`host:port`,
            `http://host:port`) and/or `dns:///name:port` (every A/AAAA record of a headless
            Service), each with its port (`fleet.ADDRESS_FORMS`); the push counts only once
            every replica reports the version AVAILABLE.
        metrics_port: the replicas' REST port, where TF Serving serves Prometheus metrics,
            when the fleet is addressed over gRPC (8501 in the official image).
        watch_seconds: after the swap, watch the new version this long and roll it back when
            it does worse than the previous one (0: no watch).
        watch_interval_seconds: how often the watch samples (metrics, replayed requests).
        watch_requests_file: a TFRecord of PredictionLogs to replay at both versions during
            the watch; by default the warmup requests of the new and the previous version.
        watch_replay: drive replayed requests at both versions (False: metrics only).
        watch_thresholds: WatchThresholds (or a dict of its fields).
        canary_label: with `stable_label`, a label canary on the model config file: the new
            version is labelled `canary_label` first, watched, and only then `stable_label`
            moves to it; on failure the canary label goes back to the stable version.
        stable_label: the label clients pin to for the proven version.
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
    fleet: list[str] = field(default_factory=list)
    metrics_port: int | None = None
    watch_seconds: float = 0.0
    watch_interval_seconds: float = 1.0
    watch_requests_file: str | None = None
    watch_replay: bool = True
    watch_thresholds: WatchThresholds = field(default_factory=WatchThresholds)
    canary_label: str | None = None
    stable_label: str | None = None

    def __post_init__(self) -> None:
        self._check_progressive_delivery()
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
        if self.version_labels and not (
            (self.server_address or self.fleet) and self.model_config_file
        ):
            raise PushConfigError(
                "version_labels need model_config_file (where labels live) and server_address "
                "(TF Serving refuses a label on a version that is not AVAILABLE)"
            )

    def _check_progressive_delivery(self) -> None:
        if isinstance(self.fleet, str):
            self.fleet = [self.fleet]
        for entry in self.fleet:
            try:
                check_fleet_entry(entry)
            except FleetError as exc:
                raise PushConfigError(str(exc)) from exc
        if self.server_address:
            try:
                check_fleet_entry(self.server_address)
            except FleetError as exc:
                message = str(exc).replace("fleet entry", "server_address", 1)
                raise PushConfigError(message) from exc
        if isinstance(self.watch_thresholds, Mapping):
            unknown = set(self.watch_thresholds) - {
                f.name for f in dataclasses.fields(WatchThresholds)
            }
            if unknown:
                raise PushConfigError(
                    f"unknown watch_thresholds {sorted(unknown)}; the accepted keys are "
                    f"{[f.name for f in dataclasses.fields(WatchThresholds)]}"
                )
            self.watch_thresholds = WatchThresholds(**self.watch_thresholds)
        if self.watch_seconds < 0 or self.watch_interval_seconds <= 0:
            raise PushConfigError(
                "watch_seconds must be >= 0 (0: no watch) and watch_interval_seconds positive"
            )
        if self.watch_seconds and not (self.server_address or self.fleet):
            raise PushConfigError("watch_seconds needs server_address or fleet: what to watch")
        if bool(self.canary_label) != bool(self.stable_label):
            raise PushConfigError(
                "a label canary needs both canary_label and stable_label (e.g. canary, stable)"
            )
        if self.canary_label:
            if self.canary_label == self.stable_label:
                raise PushConfigError("canary_label and stable_label must differ")
            if not (self.model_config_file and (self.server_address or self.fleet)):
                raise PushConfigError(
                    "a label canary needs model_config_file (where labels live) and "
                    "server_address or fleet (a label may only point at an AVAILABLE version)"
                )
            if {self.canary_label, self.stable_label} & set(self.version_labels):
                raise PushConfigError(
                    "canary_label/stable_label are moved by the label canary: leave them out "
                    "of version_labels"
                )

    @property
    def replica_addresses(self) -> list[str]:
        """Returns the fleet entries, or the one server address, or none."""
        if self.fleet:
            return list(self.fleet)
        return [self.server_address] if self.server_address else []

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
