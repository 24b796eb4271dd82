"""A serving fleet on loopback: three embedded servers polling one volume and one config file.

Models (real SavedModels, built once per session) compute y = x + intercept on `serving_default`
(float `x`) and carry a warmup file. `regress_y` takes serialized tf.Examples in `inputs` and
gives `outputs`; a TF2 export marks it `tensorflow/serving/predict`, so TF Serving's Regress runs it
only without `--enable_signature_method_name_check`: a version whose warmup regresses through it
loads on the default replicas and ends in END on a replica started with that flag, the
per-replica fault of these tests.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tfx_serving_ext.publish import volume

MODEL = "m"
# Every replica keeps two versions loaded: a rollback or a label never waits for a reload.
CONFIG_TEXT = (
    'model_config_list {{ config {{ name: "{name}" base_path: "{base}" '
    'model_platform: "tensorflow" model_version_policy {{ latest {{ num_versions: 2 }} }} '
    "{labels}}} }}"
)


# The watch's latency rule (p99 at most 2x the previous + 2 ms) is for real fleets; on a busy CI
# machine a 1 ms model's p99 swings by several ms. Tests about errors give latency this slack.
NOISY_MACHINE_THRESHOLDS = {"ratio_slack_ms": 50.0}


def save_fleet_model(
    export_dir: Path,
    intercept: float,
    *,
    fail_on_positive: bool = False,
    warmup_x: float = -1.0,
    regress_warmup: bool = False,
) -> Path:
    """Returns `export_dir` holding y = x + intercept, with a one-record warmup file.

    Args:
        intercept: tells versions apart by their answers.
        fail_on_positive: every request with a positive x fails (an assertion), as a model
            that loads and warms up but errors on real traffic.
        warmup_x: the x of the warmup's Predict record (and the watch's replayed request).
        regress_warmup: the warmup also regresses through `regress_y` (see module docstring).
    """
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from tfx_serving_ext.checks.warmup import write_warmup_file
    from tfx_serving_ext.protocol.tensors import ndarray_to_tensor_proto

    class FleetModel(tf.Module):
        def __init__(self):
            super().__init__()
            self.intercept = tf.Variable(intercept, dtype=tf.float32)

        def compute(self, x):
            if fail_on_positive:
                tf.debugging.assert_less_equal(x, 0.0, message="x must not be positive")
            return x + self.intercept

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": self.compute(x)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, serialized):
            parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})
            return {"outputs": self.compute(parsed["x"])}

    module = FleetModel()
    tf.saved_model.save(
        module,
        str(export_dir),
        signatures={"serving_default": module.serve, "regress_y": module.regress},
    )
    logs = []
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.signature_name = "serving_default"
    ndarray_to_tensor_proto(
        np.asarray([warmup_x], dtype=np.float32), log.predict_log.request.inputs["x"]
    )
    logs.append(log)
    if regress_warmup:
        log = prediction_log_pb2.PredictionLog()
        request = log.regress_log.request
        request.model_spec.signature_name = "regress_y"
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(warmup_x)
        logs.append(log)
    write_warmup_file(export_dir, logs)
    return export_dir


@pytest.fixture(scope="session")
def fleet_models(tmp_path_factory) -> SimpleNamespace:
    """v1 (y = x + 1, warmed with x = 2), good (x + 2), faulty_on_strict_replica (x + 3, a
    Regress warmup), errors_on_traffic (x + 4: fails on any positive x, warmed with x = -1)."""
    root = tmp_path_factory.mktemp("fleet_models")
    return SimpleNamespace(
        v1=save_fleet_model(root / "v1", 1.0, warmup_x=2.0),
        good=save_fleet_model(root / "good", 2.0, warmup_x=2.0),
        faulty_on_strict_replica=save_fleet_model(root / "faulty", 3.0, regress_warmup=True),
        errors_on_traffic=save_fleet_model(root / "errors", 4.0, fail_on_positive=True),
    )


def write_config(path: Path, base: Path, labels: dict[str, int] | None = None) -> Path:
    """Writes the fleet's model config file (latest 2 versions, optional labels)."""
    entries = "".join(
        f'version_labels {{ key: "{k}" value: {v} }} ' for k, v in (labels or {}).items()
    )
    path.write_text(CONFIG_TEXT.format(name=MODEL, base=base, labels=entries))
    return path


@pytest.fixture
def fleet(tmp_path, fleet_models, request):
    """Version 1 on a volume served by three replicas; the third (`strict`) checks method names.

    Parametrize indirectly with {"labels": {...}} to start with labels in the config file, and
    {"metrics": True} to have every replica serve TF Serving's Prometheus metrics.
    """
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.server import ModelServer, ServerOptions

    params = getattr(request, "param", None) or {}
    base = tmp_path / "serving" / MODEL
    volume.publish_version(fleet_models.v1, base)
    config_file = write_config(tmp_path / "models.config", base, params.get("labels"))
    monitoring = ""
    if params.get("metrics"):
        monitoring_file = tmp_path / "monitoring.config"
        monitoring_file.write_text(
            'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'
        )
        monitoring = str(monitoring_file)
    servers = []
    try:
        for strict in (False, False, True):
            server = ModelServer(
                ServerOptions(
                    model_config_file=str(config_file),
                    model_config_file_poll_wait_seconds=0.2,
                    file_system_poll_wait_seconds=0.1,
                    max_num_load_retries=0,
                    load_retry_interval_seconds=0.1,
                    enable_signature_method_name_check=strict,
                    monitoring_config_file=monitoring,
                )
            )
            servers.append(server.start())
        for server in servers:
            with ServingClient(server.grpc_address) as client:
                client.wait_until_available(MODEL, version=1, timeout=60)
        yield SimpleNamespace(
            base=base,
            config_file=config_file,
            servers=servers,
            grpc=[s.grpc_address for s in servers],
            rest=[s.rest_url for s in servers],
        )
    finally:
        for server in servers:
            server.stop()


def newest_available(address: str) -> int:
    """Returns the newest version a replica reports AVAILABLE."""
    from tfx_serving_ext.client.client import ServingClient

    with ServingClient(address) as client:
        return max(s.version for s in client.model_status(MODEL) if s.state == "AVAILABLE")


class PinnedClients(threading.Thread):
    """Predicts x = 2 on every replica in turn, pinned to a version or a label; counts failures."""

    def __init__(self, addresses: list[str], *, version: int | None = None, label: str = ""):
        super().__init__(daemon=True)
        self.addresses, self.version, self.label = addresses, version, label
        self.answers: list[tuple[str, int, float]] = []
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        from tfx_serving_ext.client.client import ServingClient

        clients = [ServingClient(a) for a in self.addresses]
        try:
            while not self._halt.is_set():
                for address, client in zip(self.addresses, clients, strict=True):
                    try:
                        result = client.predict(
                            MODEL, {"x": [2.0]}, version=self.version, label=self.label or None
                        )
                        answer = (address, result.version, float(result.outputs["y"][0]))
                        self.answers.append(answer)
                    except Exception as exc:  # every failure is what the test counts
                        self.failures.append(f"{address}: {exc!r}")
                time.sleep(0.01)
        finally:
            for client in clients:
                client.close()

    def __enter__(self) -> PinnedClients:
        self.start()
        deadline = time.monotonic() + 30
        while len(self.answers) < 2 * len(self.addresses) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info) -> None:
        self._halt.set()
        self.join(timeout=10)
