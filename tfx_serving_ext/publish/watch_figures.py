"""Returns one side's figures in the post-push watch: requests, errors, error rate, p50/p99.

A side is a version (replayed requests sent to it explicitly) or a period of a replica's request
metrics (before or after the swap). Latency comes either from measured requests or from a
Prometheus histogram (TF Serving's `request_latency` buckets, in microseconds).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SideFigures:
    """Requests, errors and latency of one side of the comparison."""

    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    # Cumulative histogram {upper bound in ms: count} when latency comes from metrics.
    latency_buckets_ms: dict[float, float] = field(default_factory=dict)
    error_messages: Counter = field(default_factory=Counter)

    def record(self, seconds: float, error: str | None = None) -> None:
        """Counts one measured request (`error`: its status and message, None when OK)."""
        self.requests += 1
        self.latencies_ms.append(seconds * 1000.0)
        if error is not None:
            self.errors += 1
            # One line per message: the reasons and the CLI show it inline.
            self.error_messages[" ".join(error.split())[:200]] += 1

    def merge(self, other: SideFigures) -> None:
        """Adds another side's counts into this one (e.g. replicas into the fleet's total)."""
        self.requests += other.requests
        self.errors += other.errors
        self.latencies_ms.extend(other.latencies_ms)
        for bound, count in other.latency_buckets_ms.items():
            self.latency_buckets_ms[bound] = self.latency_buckets_ms.get(bound, 0.0) + count
        self.error_messages.update(other.error_messages)

    @property
    def error_rate(self) -> float:
        """Returns errors / requests (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def latency_ms(self, quantile: float) -> float | None:
        """Returns the latency quantile in ms (None without any latency figure)."""
        if self.latencies_ms:
            return float(np.percentile(self.latencies_ms, quantile * 100))
        return histogram_quantile(self.latency_buckets_ms, quantile)

    def to_dict(self) -> dict[str, Any]:
        """Returns the figures as a JSON-ready dict (no raw latencies)."""
        p50, p99 = self.latency_ms(0.5), self.latency_ms(0.99)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p50_ms": None if p50 is None else round(p50, 3),
            "p99_ms": None if p99 is None else round(p99, 3),
            "top_errors": [m for m, _ in self.error_messages.most_common(3)],
        }


def histogram_quantile(buckets: dict[float, float], quantile: float) -> float | None:
    """Returns the quantile of a cumulative histogram as Prometheus' histogram_quantile does.

    Linear interpolation inside the bucket the rank falls in; the +Inf bucket answers with the
    highest finite bound. None when the histogram is empty.
    """
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound
