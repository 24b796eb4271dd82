"""Drives the same requests at several targets with a set concurrency, bounded in count and time.

Request number `i` is `requests[i % len(requests)]`; it is sent to every target (candidate and
baseline) by the same worker, one right after the other, with the order alternating with `i` so
that neither target systematically enjoys a warmer cache. Each send is timed on its own and
recorded with its outputs (for the agreement comparison) or its error.

Example:
    targets = [Target("candidate", requests, send_candidate), Target("baseline", ...)]
    result = drive_load(targets, num_requests=200, concurrency=8, max_seconds=60)
    latency_summary(result.latencies_ms("candidate"))
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# send(prepared request) -> {output name: array}; raises on a failed request.
Sender = Callable[[Any], dict[str, np.ndarray]]


@dataclass
class Target:
    """One side of the comparison: its prepared requests (None: not sent there) and sender."""

    key: str
    requests: Sequence[Any]
    send: Sender


@dataclass
class RequestRecord:
    """One request sent to one target: when, how long, and what came back."""

    index: int
    target: str
    signature: str
    started_s: float  # since the run began
    latency_ms: float
    error: str | None = None
    outputs: dict[str, np.ndarray] | None = None

    def to_json(self) -> dict[str, Any]:
        """Returns the record without its outputs, for report.json."""
        return {
            "index": self.index,
            "target": self.target,
            "signature": self.signature,
            "started_s": round(self.started_s, 6),
            "latency_ms": round(self.latency_ms, 4),
            "error": self.error,
        }


@dataclass
class LoadResult:
    """Every record of a run, its wall time, and why it stopped before the count, if it did."""

    records: list[RequestRecord] = field(default_factory=list)
    wall_seconds: float = 0.0
    requests_planned: int = 0
    requests_issued: int = 0
    stopped_early: str | None = None

    def for_target(self, key: str) -> list[RequestRecord]:
        """Returns the records of one target, by request number."""
        return sorted((r for r in self.records if r.target == key), key=lambda r: r.index)

    def latencies_ms(self, key: str, *, ok_only: bool = True) -> np.ndarray:
        """Returns one target's latencies in ms (successful requests only, by default)."""
        values = [
            r.latency_ms
            for r in self.records
            if r.target == key and (r.error is None or not ok_only)
        ]
        return np.asarray(values, dtype=np.float64)

    def requests_per_second(self) -> float:
        """Returns the sends per second over the run (all targets together)."""
        return len(self.records) / self.wall_seconds if self.wall_seconds > 0 else 0.0


def latency_summary(latencies_ms: np.ndarray) -> dict[str, float | int | None]:
    """Returns count, mean, min, p50, p90, p99 and max of latencies (None when empty)."""
    if latencies_ms.size == 0:
        return {k: None for k in ("mean", "min", "p50", "p90", "p99", "max")} | {"count": 0}
    return {
        "count": int(latencies_ms.size),
        "mean": float(latencies_ms.mean()),
        "min": float(latencies_ms.min()),
        "p50": float(np.percentile(latencies_ms, 50)),
        "p90": float(np.percentile(latencies_ms, 90)),
        "p99": float(np.percentile(latencies_ms, 99)),
        "max": float(latencies_ms.max()),
    }


def _signature_of(request: Any) -> str:
    spec = getattr(getattr(request, "request", request), "model_spec", None)
    name = getattr(request, "signature_name", None) or getattr(spec, "signature_name", "")
    return name or "serving_default"


def drive_load(
    targets: Sequence[Target],
    *,
    num_requests: int,
    concurrency: int = 1,
    max_seconds: float | None = None,
    keep_outputs: bool = True,
) -> LoadResult:
    """Returns the records of sending request 0..num_requests-1 to every target.

    Args:
        targets: the sides to send to; each target's `requests` are aligned (same length).
        num_requests: how many request numbers to issue (requests are cycled).
        concurrency: worker threads, each sending one request number at a time.
        max_seconds: no new request number is issued after this many seconds.
        keep_outputs: keep each response's outputs (needed for agreement).

    Raises:
        ValueError: no targets, misaligned request lists, or a non-positive count/concurrency.
    """
    if not targets:
        raise ValueError("drive_load needs at least one target")
    lengths = {len(t.requests) for t in targets}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"every target needs the same non-zero number of requests, got {lengths}")
    if num_requests <= 0 or concurrency <= 0:
        raise ValueError("num_requests and concurrency must be positive")
    cycle = lengths.pop()
    result = LoadResult(requests_planned=num_requests)
    lock = threading.Lock()
    interrupted = threading.Event()
    next_index = 0
    began = time.perf_counter()

    def take() -> int | None:
        nonlocal next_index
        with lock:
            if next_index >= num_requests or interrupted.is_set():
                return None
            if max_seconds is not None and time.perf_counter() - began > max_seconds:
                if result.stopped_early is None:
                    result.stopped_early = (
                        f"time bound of {max_seconds} s reached after {next_index} of "
                        f"{num_requests} requests"
                    )
                return None
            index = next_index
            next_index += 1
            return index

    def worker() -> list[RequestRecord]:
        records = []
        while (index := take()) is not None:
            order = targets if index % 2 == 0 else list(reversed(targets))
            for target in order:
                request = target.requests[index % cycle]
                if request is None:
                    continue
                started = time.perf_counter()
                outputs, error = None, None
                try:
                    outputs = target.send(request)
                except Exception as exc:  # noqa: BLE001 - every failure is a measurement
                    error = f"{type(exc).__name__}: {exc}"
                latency_ms = (time.perf_counter() - started) * 1000.0
                records.append(
                    RequestRecord(
                        index=index,
                        target=target.key,
                        signature=_signature_of(request),
                        started_s=started - began,
                        latency_ms=latency_ms,
                        error=error,
                        outputs=outputs if keep_outputs else None,
                    )
                )
        return records

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="canary-load") as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        try:
            for future in futures:
                result.records.extend(future.result())
        except BaseException:
            # SIGTERM (raised here by the canary's handler) or a crash: workers stop after
            # their request in flight, so the server can be stopped promptly.
            interrupted.set()
            raise
    result.wall_seconds = time.perf_counter() - began
    result.requests_issued = next_index
    result.records.sort(key=lambda r: (r.index, r.target))
    if result.stopped_early:
        logger.warning("Load stopped early: %s", result.stopped_early)
    return result
