"""Returns a replica's request figures for one model from TF Serving's Prometheus metrics.

TF Serving exports (with `--monitoring_config_file` enabling Prometheus, on the REST port at
`/monitoring/prometheus/metrics`):
- `:tensorflow:serving:request_count{model_name, status}`: a counter per gRPC status name;
- `:tensorflow:serving:request_latency_bucket{model_name, API, entrypoint, le}`: a histogram
  in microseconds.
Neither has a version label, so the watch takes a snapshot before the swap and compares the
counters' growth after it (`MetricsSnapshot.since`) with the figures before.

Usage:
    before = scrape_snapshot("http://10.0.0.7:8501", "penguin")
    ...
    after = scrape_snapshot("http://10.0.0.7:8501", "penguin").since(before)
    after.figures().error_rate
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from tfx_serving_ext.publish.watch_figures import SideFigures

METRICS_PATH = "/monitoring/prometheus/metrics"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY_BUCKET = ":tensorflow:serving:request_latency_bucket"


class MetricsUnavailable(RuntimeError):
    """A replica's metrics cannot be read; the message says where and what to enable."""


@dataclass
class MetricsSnapshot:
    """Cumulative request counts by status and latency buckets (µs) of one model on a replica."""

    requests_by_status: dict[str, float] = field(default_factory=dict)
    latency_buckets_us: dict[float, float] = field(default_factory=dict)

    def since(self, earlier: MetricsSnapshot) -> MetricsSnapshot:
        """Returns the growth of every counter since `earlier` (a restart counts from zero)."""

        def grown(now: dict, before: dict) -> dict:
            delta = {key: value - before.get(key, 0.0) for key, value in now.items()}
            if any(value < 0 for value in delta.values()):
                return dict(now)  # counters went down: the replica restarted
            return delta

        return MetricsSnapshot(
            grown(self.requests_by_status, earlier.requests_by_status),
            grown(self.latency_buckets_us, earlier.latency_buckets_us),
        )

    def figures(self) -> SideFigures:
        """Returns the snapshot as SideFigures (status != OK is an error; latency in ms)."""
        total = int(round(sum(self.requests_by_status.values())))
        ok = int(round(self.requests_by_status.get("OK", 0.0)))
        side = SideFigures(requests=total, errors=total - ok)
        for status, count in self.requests_by_status.items():
            if status != "OK" and count > 0:
                side.error_messages[status] += int(round(count))
        side.latency_buckets_ms = {
            (bound if math.isinf(bound) else bound / 1000.0): count
            for bound, count in self.latency_buckets_us.items()
        }
        return side


def parse_snapshot(text: str, model_name: str) -> MetricsSnapshot:
    """Returns the figures of `model_name` from Prometheus exposition text.

    Latency buckets of every API and entrypoint are added up; counters are read with or
    without the `_total` suffix.
    """
    from prometheus_client.parser import text_string_to_metric_families

    snapshot = MetricsSnapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model_name") != model_name:
                continue
            if sample.name in (REQUEST_COUNT, REQUEST_COUNT + "_total"):
                status = sample.labels.get("status", "UNKNOWN")
                counts = snapshot.requests_by_status
                counts[status] = counts.get(status, 0.0) + sample.value
            elif sample.name == REQUEST_LATENCY_BUCKET:
                bound = float(sample.labels["le"])
                buckets = snapshot.latency_buckets_us
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return snapshot


def scrape_snapshot(metrics_url: str, model_name: str, timeout: float = 5.0) -> MetricsSnapshot:
    """Returns the replica's current figures for the model, read from its metrics endpoint.

    Raises:
        MetricsUnavailable: the endpoint does not answer 200 (Prometheus not enabled?).
    """
    url = metrics_url.rstrip("/") + METRICS_PATH
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise MetricsUnavailable(
            f"{url} answered HTTP {exc.code}: point metrics_port (push --metrics-port) at the "
            "replicas' REST port (TF Serving's --rest_api_port) and start TF Serving with "
            "--monitoring_config_file enabling prometheus_config"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise MetricsUnavailable(
            f"{url} unreachable: {exc}; is metrics_port (push --metrics-port) the replicas' "
            "REST port?"
        ) from exc
    return parse_snapshot(text, model_name)
