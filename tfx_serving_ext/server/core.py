"""The server core: every model's manager, the version source, and request dispatch.

The gRPC and REST front ends both call this, so both answer with the same statuses.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
)

from tfx_serving_ext.checks.model_runner import LocalModel
from tfx_serving_ext.protocol import model_config as config_lib
from tfx_serving_ext.protocol import tensors
from tfx_serving_ext.protocol.errors import (
    CODE_NUMBERS,
    ServingError,
    invalid_argument,
    not_found,
)
from tfx_serving_ext.protocol.saved_model import SERVE_TAG
from tfx_serving_ext.server.batching import ServerBatching
from tfx_serving_ext.server.manager import LoadPolicy, ModelManager
from tfx_serving_ext.server.metrics import ServingMetrics
from tfx_serving_ext.server.servable import Servable
from tfx_serving_ext.server.source import VersionSource
from tfx_serving_ext.server.warmup import run_warmup

logger = logging.getLogger(__name__)

_STATE_NUMBERS = {
    "UNKNOWN": 0,
    "START": 10,
    "LOADING": 20,
    "AVAILABLE": 30,
    "UNLOADING": 40,
    "END": 50,
}


class ServerCore:
    """Holds the models of a ModelServerConfig and answers requests against them."""

    def __init__(
        self,
        *,
        file_system_poll_wait_seconds: float = 1.0,
        enable_model_warmup: bool = True,
        num_request_iterations_for_warmup: int = 1,
        load_policy: LoadPolicy | None = None,
        enable_signature_method_name_check: bool = False,
        saved_model_tags: tuple[str, ...] = (SERVE_TAG,),
        allow_version_labels_for_unavailable_models: bool = False,
        batching: ServerBatching | None = None,
        metrics: ServingMetrics | None = None,
        request_limits: tensors.RequestLimits = tensors.DEFAULT_LIMITS,
    ):
        self._batching = batching
        # Every request through either front end is counted here, so gRPC and REST agree.
        self.metrics = metrics or ServingMetrics()
        self._limits = request_limits
        self._method_name_check = enable_signature_method_name_check
        self._tags = tuple(saved_model_tags)
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._enable_warmup = enable_model_warmup
        self._warmup_iterations = num_request_iterations_for_warmup
        self._load_policy = load_policy or LoadPolicy()
        self._managers: dict[str, ModelManager] = {}
        self._configs: dict[str, object] = {}
        self._lock = threading.RLock()
        self._reload_lock = threading.Lock()
        self._source = VersionSource(self._on_aspired_versions, file_system_poll_wait_seconds)
        self._started = False

    # ---- lifecycle and configuration --------------------------------------------------------

    def start(self, config) -> None:
        """Applies `config` and starts polling for versions (does not wait for loads)."""
        self._apply_config(config)
        self._source.start()
        self._started = True

    def stop(self) -> None:
        """Stops polling and unloads every model."""
        self._source.stop()
        with self._lock:
            managers = list(self._managers.values())
        for manager in managers:
            manager.stop()
        if self._batching is not None:
            self._batching.stop()

    def _apply_config(self, config) -> set[str]:
        models = config_lib.validated_model_configs(config)
        with self._lock:
            added = {m.name for m in models} - set(self._configs)
            removed = set(self._configs) - {m.name for m in models}
            for model in models:
                if model.name not in self._managers:
                    self._managers[model.name] = ModelManager(
                        model.name, self._load_servable, self._load_policy
                    )
                self._managers[model.name].set_labels(dict(model.version_labels))
            for name in removed:
                logger.info("Model %s left the config: unloading all its versions", name)
                self._managers[name].set_aspired_versions({})
                self._managers[name].set_labels({})
            self._configs = {m.name: m for m in models}
            self._source.set_models(models)
        return added

    def reload_config(self, config, wait_timeout: float = 600.0) -> None:
        """Replaces the model list, as HandleReloadConfigRequest does.

        As TF Serving's ServerCore::ReloadConfig: every version label must point at a version
        that is AVAILABLE now, else the whole config is rejected and nothing changes. Models left
        out are then unloaded, and the call blocks until newly added models have settled
        (`wait_timeout` <= 0: does not wait).

        Raises:
            ServingError: the config is invalid, a label points at a version that does not
                serve, or a new model failed to load.
        """
        with self._reload_lock:
            self._check_labels(config_lib.validated_model_configs(config))
            added = self._apply_config(config)
            if self._started:
                self._source.poll_once()
            if wait_timeout <= 0:
                return
            deadline = time.monotonic() + wait_timeout
            for name in sorted(added):
                manager = self._managers[name]
                if not manager.wait_until_settled(max(0.0, deadline - time.monotonic())):
                    raise ServingError(
                        "DEADLINE_EXCEEDED", f"Timed out waiting for model {name} to load"
                    )
                failed = [
                    r for r in manager.version_states() if r.state == "END" and r.error_code != "OK"
                ]
                if failed and not manager.available_versions():
                    raise ServingError(failed[0].error_code, failed[0].error_message)

    def _check_labels(self, models: list) -> None:
        for model in models:
            manager = self._managers.get(model.name)
            available = set(manager.available_versions()) if manager is not None else set()
            current = manager.labels() if manager is not None else {}
            for label, version in model.version_labels.items():
                # As TF Serving: the flag lets a label that is new point anywhere; moving an
                # existing label still needs a version that serves.
                if self._allow_unavailable_labels and label not in current:
                    continue
                if version not in available:
                    raise ServingError(
                        "FAILED_PRECONDITION",
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference",
                    )

    def _on_aspired_versions(self, name: str, versions: dict[int, Path]) -> None:
        # Under the lock, so that a report from a poll that listed the disk before a reload
        # removed the model cannot land after that reload's unload.
        with self._lock:
            manager = self._managers.get(name)
            if manager is not None and name in self._configs:
                manager.set_aspired_versions(versions)

    def _load_servable(self, name: str, version: int, path: Path) -> Servable:
        start = time.perf_counter()
        try:
            model = LocalModel(path, self._tags, method_name_check=self._method_name_check)
        except Exception:
            self.metrics.record_load(path, False, 0.0)
            raise
        self.metrics.record_load(path, True, (time.perf_counter() - start) * 1e6)
        servable = Servable(
            name, version, path, model, limits=self._limits, batching=self._batching
        )
        if self._enable_warmup:
            start = time.perf_counter()
            if run_warmup(servable, self._warmup_iterations):
                self.metrics.record_warmup(path, (time.perf_counter() - start) * 1e6)
        return servable

    def model_names(self) -> list[str]:
        """Returns the names of the configured models."""
        with self._lock:
            return sorted(self._configs)

    def manager(self, name: str) -> ModelManager:
        """Returns the manager of a configured model.

        Raises:
            ServingError: NOT_FOUND for a model that is not configured.
        """
        manager = self._managers.get(name)
        if manager is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        return manager

    # ---- request dispatch -------------------------------------------------------------------

    def servable_for(self, model_spec: model_pb2.ModelSpec) -> Servable:
        """Returns the servable a request's ModelSpec selects (version, label or latest).

        Raises:
            ServingError: INVALID_ARGUMENT without a model name, NOT_FOUND for an unknown
                model or version, INVALID_ARGUMENT for an unknown label.
        """
        if not model_spec.name:
            raise invalid_argument("Missing model name in request.")
        manager = self._managers.get(model_spec.name)
        choice = model_spec.WhichOneof("version_choice")
        if manager is None:
            if choice == "version":
                raise not_found(
                    "Servable not found for request: "
                    f"Specific({model_spec.name}, {model_spec.version.value})"
                )
            raise not_found(f"Servable not found for request: Latest({model_spec.name})")
        if choice == "version":
            return manager.servable(version=model_spec.version.value)
        if choice == "version_label":
            return manager.servable(label=model_spec.version_label)
        return manager.servable()

    def predict(self, request, entrypoint: str = "GRPC"):
        """Returns the PredictResponse for a PredictRequest (counted under `entrypoint`)."""
        with self._observed(request.model_spec.name, "Predict", entrypoint):
            servable = self.servable_for(request.model_spec)
            return self.run_model(servable.name, "Predict", servable.predict, request)

    async def predict_async(self, request, entrypoint: str = "GRPC"):
        """As `predict`, for a servable whose requests wait in batch queues: awaits its batch.

        Raises:
            ServingError: as `predict`.
        """
        with self._observed(request.model_spec.name, "Predict", entrypoint):
            servable = self.servable_for(request.model_spec)
            start = time.perf_counter()
            response = await servable.predict_async(request)
            self._record_runtime(servable.name, "Predict", start)
            return response

    @property
    def batches_requests(self) -> bool:
        """Whether loaded versions run their requests through server-side batch queues."""
        return self._batching is not None

    def classify(self, request, entrypoint: str = "GRPC"):
        """Returns the ClassificationResponse for a ClassificationRequest."""
        with self._observed(request.model_spec.name, "Classify", entrypoint):
            servable = self.servable_for(request.model_spec)
            response = self.run_model(servable.name, "Classify", servable.classify, request)
            self.metrics.record_examples(servable.name, _example_count(request.input))
            return response

    def regress(self, request, entrypoint: str = "GRPC"):
        """Returns the RegressionResponse for a RegressionRequest."""
        with self._observed(request.model_spec.name, "Regress", entrypoint):
            servable = self.servable_for(request.model_spec)
            response = self.run_model(servable.name, "Regress", servable.regress, request)
            self.metrics.record_examples(servable.name, _example_count(request.input))
            return response

    def multi_inference(self, request, entrypoint: str = "GRPC"):
        """Returns the MultiInferenceResponse for a MultiInferenceRequest."""
        name = request.tasks[0].model_spec.name if request.tasks else ""
        with self._observed(name, "MultiInference", entrypoint):
            if not request.tasks:
                raise invalid_argument("Expected at least one task")
            response = self.servable_for(request.tasks[0].model_spec).multi_inference(request)
            self.metrics.record_examples(name, _example_count(request.input))
            return response

    def _observed(self, model_name: str, api: str, entrypoint: str):
        return self.metrics.observe_request(model_name, _api_label(api, entrypoint), entrypoint)

    def run_model(self, model_name: str, api: str, run, request):
        """Returns run(request), its time recorded as the model's runtime latency if it succeeds."""
        start = time.perf_counter()
        response = run(request)
        self._record_runtime(model_name, api, start)
        return response

    def _record_runtime(self, model_name: str, api: str, start: float) -> None:
        self.metrics.record_runtime(model_name, api, (time.perf_counter() - start) * 1e6)

    def model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Returns GetModelMetadata's answer: the version's SignatureDefMap."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing model_spec")
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field"
            )
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self.servable_for(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in servable.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """Returns GetModelStatus's answer: the state of each version (or the requested one)."""
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        spec = request.model_spec
        if not spec.name:
            raise invalid_argument("Missing model name in request.")
        manager = self._managers.get(spec.name)
        records = manager.version_states() if manager is not None else []
        if not records:
            raise not_found(f"Could not find any versions of model {spec.name}")
        choice = spec.WhichOneof("version_choice")
        if choice == "version_label":
            labels = manager.labels()
            if spec.version_label not in labels:
                raise invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            wanted = labels[spec.version_label]
        else:
            wanted = spec.version.value if choice == "version" else None
        if wanted is not None:
            records = [r for r in records if r.version == wanted]
            if not records:
                raise not_found(f"Could not find version {wanted} of model {spec.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for record in records:
            status = response.model_version_status.add()
            status.version = record.version
            status.state = _STATE_NUMBERS[record.state]
            status.status.error_code = CODE_NUMBERS.get(record.error_code, 2)
            status.status.error_message = record.error_message
        return response


def _api_label(api: str, entrypoint: str) -> str:
    # TF Serving's gRPC front end labels the method (Predict), its REST one the URL's verb
    # (predict, classify, regress).
    return api if entrypoint == "GRPC" else api.lower()


def _example_count(model_input) -> int:
    kind = model_input.WhichOneof("kind")
    return len(getattr(model_input, kind).examples) if kind else 0
