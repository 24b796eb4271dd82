"""ServingMetrics: TF Serving's request metrics, kept per server and served as Prometheus text.

TF Serving records its metrics in TensorFlow's monitoring library under names like
`/tensorflow/serving/request_count` and exports them with `--monitoring_config_file` at
`/monitoring/prometheus/metrics` (default path) on the REST port, each `/` of a name turned
into `:`. Dashboards and alerts written against TF Serving query those names, so this module
keeps them exactly:

- `:tensorflow:serving:request_count{model_name, status}` (counter): every Predict, Classify,
  Regress and MultiInference, `status` the gRPC code name (OK, INVALID_ARGUMENT, NOT_FOUND, ...);
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}` (histogram, microseconds,
  buckets 10 * 1.8^i for i < 33): successful requests only, as TF Serving. `entrypoint` is GRPC or
  REST; `API` is the gRPC method name (Predict, Classify, ...) over gRPC and the REST verb as the
  URL gives it (predict, classify, regress) over REST, as TF Serving's two front ends label them;
- `:tensorflow:serving:runtime_latency{model_name, API, runtime}` (histogram): time spent running
  the model, `runtime` TF1 as TF Serving's SavedModel (non-TFRT) servables report it;
- `:tensorflow:serving:request_example_counts{model}` (histogram, buckets 2^i for i < 15) and
  `:tensorflow:serving:request_example_count_total{model}` (counter): tf.Examples per
  Classify/Regress/MultiInference request;
- `:tensorflow:cc:saved_model:load_attempt_count{model_path, status}` (success/fail) and
  `:tensorflow:cc:saved_model:load_latency{model_path}` (microseconds, cumulative): loads;
- `:tensorflow:serving:model_warmup_latency{model_path, status}` (histogram): a version's warmup
  file replayed in full (status OK; TF Serving records a failed replay only for some errors).

Differences from TF Serving: MultiInference is counted in `request_count` and `request_latency`
(API MultiInference) too, where TF Serving leaves it out; after MAX_MODEL_NAMES distinct
`model_name` values, requests naming further models are counted as `__other__`, so that a client
inventing model names cannot grow the page (and the server) without bound.

The values live in prometheus-client metrics on a registry of this object's own (several
servers in one process never mix), and `render()` writes them in TF Serving's exposition
format: `# TYPE` lines, counters without prometheus-client's `_total` suffix, labels in TF
Serving's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from tfx_serving_ext.protocol.errors import from_exception

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
# Distinct model_name values kept apart; requests naming yet more (unknown models, made up by a
# client) are counted under OTHER_MODELS, so that no client can grow the page without bound.
MAX_MODEL_NAMES = 1000
OTHER_MODELS = "__other__"

# tensorflow::monitoring::Buckets::Exponential(10, 1.8, 33): ~20 minutes at the top.
LATENCY_BUCKETS_USEC = tuple(10 * 1.8**i for i in range(33))
# Buckets::Exponential(1, 2, 15): 1, 2, 4, ..., 16384 examples.
EXAMPLE_COUNT_BUCKETS = tuple(float(2**i) for i in range(15))

REQUEST_COUNT = "/tensorflow/serving/request_count"
REQUEST_LATENCY = "/tensorflow/serving/request_latency"
RUNTIME_LATENCY = "/tensorflow/serving/runtime_latency"
EXAMPLE_COUNTS = "/tensorflow/serving/request_example_counts"
EXAMPLE_COUNT_TOTAL = "/tensorflow/serving/request_example_count_total"
LOAD_ATTEMPT_COUNT = "/tensorflow/cc/saved_model/load_attempt_count"
LOAD_LATENCY = "/tensorflow/cc/saved_model/load_latency"
WARMUP_LATENCY = "/tensorflow/serving/model_warmup_latency"


def prometheus_name(name: str) -> str:
    """Returns the Prometheus name TF Serving exports a monitoring name under (`/` -> `:`)."""
    converted = "".join(c if c.isascii() and (c.isalnum() or c == "_") else ":" for c in name)
    return "_" + converted if converted[:1].isdigit() else converted


def _number(value: float) -> str:
    # TF Serving writes doubles with absl::StrCat: six significant digits ("32.4", "1.46811e+09").
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return format(value, ".6g")


def _labels(names: tuple[str, ...], values: dict[str, str], extra: str = "") -> str:
    parts = []
    for name in names:
        # As TF Serving (backslash, quote), and the line feed the text format also requires.
        escaped = values[name].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{name}="{escaped}"')
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


class ServingMetrics:
    """TF Serving's request and load metrics of one server, rendered as its Prometheus page."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self._model_names: set[str] = set()
        self._names_lock = threading.Lock()
        self._families: dict[str, tuple[str, tuple[str, ...], MetricWrapperBase]] = {}
        self._request_count = self._counter(
            REQUEST_COUNT, "The total number of requests.", ("model_name", "status")
        )
        self._request_latency = self._histogram(
            REQUEST_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            LATENCY_BUCKETS_USEC,
        )
        self._runtime_latency = self._histogram(
            RUNTIME_LATENCY,
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ("model_name", "API", "runtime"),
            LATENCY_BUCKETS_USEC,
        )
        self._example_counts = self._histogram(
            EXAMPLE_COUNTS,
            "The number of tensorflow.Examples per request.",
            ("model",),
            EXAMPLE_COUNT_BUCKETS,
        )
        self._example_count_total = self._counter(
            EXAMPLE_COUNT_TOTAL, "The total number of tensorflow.Examples.", ("model",)
        )
        self._load_attempts = self._counter(
            LOAD_ATTEMPT_COUNT,
            "The number of times a SavedModel was successfully loaded.",
            ("model_path", "status"),
        )
        self._load_latency = self._counter(
            LOAD_LATENCY, "Latency in microseconds for SavedModels.", ("model_path",)
        )
        self._warmup_latency = self._histogram(
            WARMUP_LATENCY,
            "Distribution of wall time (in microseconds) for warming up the model.",
            ("model_path", "status"),
            LATENCY_BUCKETS_USEC,
        )

    def _counter(self, name: str, help_text: str, labels: tuple[str, ...]) -> Counter:
        metric = Counter(prometheus_name(name), help_text, labels, registry=self.registry)
        self._families[prometheus_name(name)] = ("counter", labels, metric)
        return metric

    def _histogram(
        self, name: str, help_text: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Histogram:
        metric = Histogram(
            prometheus_name(name), help_text, labels, registry=self.registry, buckets=buckets
        )
        self._families[prometheus_name(name)] = ("histogram", labels, metric)
        return metric

    # ---- recording --------------------------------------------------------------------------

    def record_request(
        self,
        model_name: str,
        api: str,
        entrypoint: str,
        status: str,
        latency_usec: float,
    ) -> None:
        """Counts one request by its status; a successful one, or one its client gave up
        waiting for (CANCELLED), also adds its latency, so that p99 keeps the slowest."""
        model_name = self._model_label(model_name)
        self._request_count.labels(model_name, status).inc()
        if status in ("OK", "CANCELLED"):
            self._request_latency.labels(model_name, api, entrypoint).observe(latency_usec)

    def _model_label(self, model_name: str) -> str:
        with self._names_lock:
            if model_name in self._model_names:
                return model_name
            if len(self._model_names) < MAX_MODEL_NAMES:
                self._model_names.add(model_name)
                return model_name
        return OTHER_MODELS

    @contextlib.contextmanager
    def observe_request(self, model_name: str, api: str, entrypoint: str) -> Iterator[None]:
        """Records the request run in the `with` block: its status (from what it raises) and,
        when it succeeds, its latency."""
        start = time.perf_counter()
        try:
            yield
        except asyncio.CancelledError:  # the client gave up (cancel, deadline) while it waited
            elapsed = (time.perf_counter() - start) * 1e6
            self.record_request(model_name, api, entrypoint, "CANCELLED", elapsed)
            raise
        except Exception as exc:
            self.record_request(model_name, api, entrypoint, from_exception(exc).code, 0.0)
            raise
        self.record_request(model_name, api, entrypoint, "OK", (time.perf_counter() - start) * 1e6)

    def record_runtime(self, model_name: str, api: str, latency_usec: float) -> None:
        """Adds the time the model itself ran for one successful request."""
        self._runtime_latency.labels(model_name, api, "TF1").observe(latency_usec)

    def record_examples(self, model_name: str, count: int) -> None:
        """Adds the number of tf.Examples of one Classify/Regress/MultiInference request."""
        self._example_counts.labels(model_name).observe(count)
        self._example_count_total.labels(model_name).inc(count)

    def record_load(self, model_path: str | Path, succeeded: bool, latency_usec: float) -> None:
        """Counts one attempt to load the SavedModel at `model_path` (and its time, if loaded)."""
        path = str(model_path)
        self._load_attempts.labels(path, "success" if succeeded else "fail").inc()
        if succeeded:
            self._load_latency.labels(path).inc(max(0.0, latency_usec))

    def record_warmup(self, model_path: str | Path, latency_usec: float) -> None:
        """Adds the time the warmup file of the version at `model_path` took to replay."""
        self._warmup_latency.labels(str(model_path), "OK").observe(latency_usec)

    # ---- exposition -------------------------------------------------------------------------

    def render(self) -> str:
        """Returns the Prometheus text page, in TF Serving's format (metrics sorted by name)."""
        lines: list[str] = []
        for name in sorted(self._families):
            kind, label_names, metric = self._families[name]
            lines.append(f"# TYPE {name} {kind}")
            for family in metric.collect():
                if kind == "counter":
                    lines.extend(_counter_lines(name, label_names, family.samples))
                else:
                    lines.extend(_histogram_lines(name, label_names, family.samples))
        return "\n".join(lines) + "\n"


def _counter_lines(name: str, label_names: tuple[str, ...], samples) -> list[str]:
    return [
        f"{name}{_labels(label_names, s.labels)} {int(s.value)}"
        for s in samples
        if s.name.endswith("_total")
    ]


def _histogram_lines(name: str, label_names: tuple[str, ...], samples) -> list[str]:
    # As TF Serving, per label set: the buckets, then _sum, then _count.
    lines: list[str] = []
    count_line = ""
    for sample in samples:
        labels = _labels(label_names, sample.labels)
        if sample.name == f"{name}_bucket":
            bound = _number(float(sample.labels["le"]))
            labels = _labels(label_names, sample.labels, f'le="{bound}"')
            lines.append(f"{name}_bucket{labels} {int(sample.value)}")
        elif sample.name == f"{name}_count":
            count_line = f"{name}_count{labels} {int(sample.value)}"
        elif sample.name == f"{name}_sum":
            lines.extend([f"{name}_sum{labels} {_number(sample.value)}", count_line])
    return lines
