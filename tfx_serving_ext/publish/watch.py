"""Returns the post-push watch's verdict: is the new version doing worse than the previous one?

For a window after the swap the watch samples every replica: it replays a few requests at the new
version and at the previous one explicitly (`watch_traffic`), and reads the replica's request
metrics, comparing their growth since the snapshot taken before the swap with the figures before
it (`watch_metrics`: TF Serving's metrics carry no version). It stops at the first sample where
the new version's error rate exceeds the previous one's by more than the threshold; latency (p99
against the previous p99, and an optional ceiling) is judged over the whole window at its end.

Usage:
    before = metrics_baseline(fleet, "penguin")       # before publishing
    ...                                                 # publish, verify on every replica
    report = watch_new_version(fleet, "penguin", new_version=8, previous_version=7,
                               window_seconds=300, interval_seconds=1, thresholds=thresholds,
                               replay=requests, metrics_before=before)
    report.verdict, report.reasons
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfx_serving_ext.checks.requests import RequestForSignature
from tfx_serving_ext.publish.fleet import Fleet
from tfx_serving_ext.publish.push_config import WatchThresholds
from tfx_serving_ext.publish.watch_figures import SideFigures
from tfx_serving_ext.publish.watch_metrics import (
    MetricsSnapshot,
    MetricsUnavailable,
    scrape_snapshot,
)
from tfx_serving_ext.publish.watch_traffic import send_at_version

logger = logging.getLogger(__name__)

PASSED = "passed"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"  # too little traffic on the new version to judge
WATCHING = "watching"

# Replayed requests per version, replica and sample: a trickle, not load.
REPLAY_PER_SAMPLE = 4


@dataclass
class ReplicaWatch:
    """One replica's figures during the watch."""

    replayed_new: SideFigures = field(default_factory=SideFigures)
    replayed_previous: SideFigures = field(default_factory=SideFigures)
    metrics_before: SideFigures | None = None
    metrics_after: SideFigures | None = None
    metrics_error: str = ""
    # The previous version is no longer loaded here (version policy latest { num_versions: 1 }):
    # the new one's replayed errors are then judged against none (at most max_error_rate).
    previous_unserved: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Returns the figures as a JSON-ready dict."""
        return {
            "previous_unserved": self.previous_unserved,
            "replayed_new": self.replayed_new.to_dict(),
            "replayed_previous": self.replayed_previous.to_dict(),
            "metrics_before": self.metrics_before and self.metrics_before.to_dict(),
            "metrics_after": self.metrics_after and self.metrics_after.to_dict(),
            "metrics_error": self.metrics_error,
        }


@dataclass
class WatchReport:
    """The watch's figures (fleet totals and per replica), verdict and reasons."""

    new_version: int
    previous_version: int | None
    window_seconds: float
    verdict: str = WATCHING
    reasons: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    samples: int = 0
    replicas: dict[str, ReplicaWatch] = field(default_factory=dict)

    def _total(self, name: str) -> SideFigures | None:
        sides = [getattr(r, name) for r in self.replicas.values()]
        sides = [s for s in sides if s is not None]
        if not sides:
            return None
        total = SideFigures()
        for side in sides:
            total.merge(side)
        return total

    @property
    def replayed_new(self) -> SideFigures:
        """Returns the replayed requests at the new version, over the fleet."""
        return self._total("replayed_new") or SideFigures()

    @property
    def replayed_previous(self) -> SideFigures:
        """Returns the replayed requests at the previous version, over the fleet."""
        return self._total("replayed_previous") or SideFigures()

    @property
    def metrics_before(self) -> SideFigures | None:
        """Returns the fleet's request metrics before the swap (None: no metrics)."""
        return self._total("metrics_before")

    @property
    def metrics_after(self) -> SideFigures | None:
        """Returns the growth of the fleet's request metrics since the swap."""
        return self._total("metrics_after")

    def to_dict(self) -> dict[str, Any]:
        """Returns the report as a JSON-ready dict (what the PushedModel records)."""
        before, after = self.metrics_before, self.metrics_after
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "new_version": self.new_version,
            "previous_version": self.previous_version,
            "window_seconds": self.window_seconds,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "samples": self.samples,
            "replayed": {
                "new": self.replayed_new.to_dict(),
                "previous": self.replayed_previous.to_dict(),
            },
            "metrics": {
                "before": before and before.to_dict(),
                "after": after and after.to_dict(),
            },
            "replicas": {address: r.to_dict() for address, r in self.replicas.items()},
        }


def metrics_baseline(fleet: Fleet, model_name: str) -> dict[str, MetricsSnapshot | str]:
    """Returns each replica's metrics snapshot before the swap, or why there is none."""
    snapshots: dict[str, MetricsSnapshot | str] = {}
    for replica in fleet.replicas:
        if not replica.metrics_url:
            snapshots[replica.address] = (
                "no metrics address: the replica is addressed over gRPC; set metrics_port "
                "(push --metrics-port) to its REST port"
            )
            continue
        try:
            snapshots[replica.address] = scrape_snapshot(replica.metrics_url, model_name)
        except MetricsUnavailable as exc:
            snapshots[replica.address] = str(exc)
    return snapshots


def judge(
    new: SideFigures,
    old: SideFigures,
    thresholds: WatchThresholds,
    what: str,
    *,
    latency: bool,
) -> list[str]:
    """Returns why `new` does worse than `old` (none when it does not, or cannot be told yet).

    Errors are judged once the new side has `min_requests` requests (or that many errors);
    latency only when asked (`latency`, at the end of the window) and both sides have enough.
    """
    reasons = []
    enough = new.requests >= thresholds.min_requests or new.errors >= thresholds.min_requests
    if enough and new.error_rate - old.error_rate > thresholds.max_error_rate:
        reasons.append(
            f"{what}: error rate {new.error_rate:.1%} ({new.errors}/{new.requests}) against "
            f"{old.error_rate:.1%} ({old.errors}/{old.requests}), more than "
            f"{thresholds.max_error_rate:.1%} above"
            + (f"; most frequent: {new.error_messages.most_common(1)[0][0]}" if new.errors else "")
        )
    if not latency or new.requests < thresholds.min_requests:
        return reasons
    new_p99 = new.latency_ms(0.99)
    if new_p99 is None:
        return reasons
    if thresholds.max_p99_latency_ms is not None and new_p99 > thresholds.max_p99_latency_ms:
        reasons.append(
            f"{what}: p99 {new_p99:.1f} ms above the ceiling {thresholds.max_p99_latency_ms:g} ms"
        )
    old_p99 = old.latency_ms(0.99) if old.requests >= thresholds.min_requests else None
    if old_p99 is not None:
        allowed = old_p99 * thresholds.max_p99_ratio + thresholds.ratio_slack_ms
        if new_p99 > allowed:
            reasons.append(
                f"{what}: p99 {new_p99:.1f} ms against {old_p99:.1f} ms, above "
                f"{thresholds.max_p99_ratio:g}x + {thresholds.ratio_slack_ms:g} ms"
            )
    return reasons


def _sample(
    fleet: Fleet,
    report: WatchReport,
    model_name: str,
    replay: list[RequestForSignature],
    metrics_before: dict[str, MetricsSnapshot | str],
    cursor: int,
) -> None:
    for replica in fleet.replicas:
        figures = report.replicas[replica.address]
        for i in range(min(REPLAY_PER_SAMPLE, len(replay))):
            request = replay[(cursor + i) % len(replay)]
            send_at_version(
                replica.client, request, model_name, report.new_version, figures.replayed_new
            )
            if report.previous_version is not None and not figures.previous_unserved:
                figures.previous_unserved = not send_at_version(
                    replica.client,
                    request,
                    model_name,
                    report.previous_version,
                    figures.replayed_previous,
                    unserved_is_error=False,
                )
        before = metrics_before.get(replica.address)
        if isinstance(before, MetricsSnapshot):
            try:
                now = scrape_snapshot(replica.metrics_url, model_name)
            except MetricsUnavailable as exc:
                figures.metrics_error = str(exc)
                continue
            delta = now.since(before)
            if figures.previous_unserved:
                # The watch's own probe of the unloaded previous version answered NOT_FOUND once
                # on this replica and TF Serving counted it: not an error of the new version.
                statuses = delta.requests_by_status
                statuses["NOT_FOUND"] = max(0.0, statuses.get("NOT_FOUND", 0.0) - 1)
            figures.metrics_after = delta.figures()


def watch_new_version(
    fleet: Fleet,
    model_name: str,
    *,
    new_version: int,
    previous_version: int | None,
    window_seconds: float,
    interval_seconds: float,
    thresholds: WatchThresholds,
    replay: list[RequestForSignature],
    metrics_before: dict[str, MetricsSnapshot | str],
    on_sample: Callable[[WatchReport], None] | None = None,
) -> WatchReport:
    """Returns the watch's report once the window is over or the new version failed it.

    Args:
        fleet: the replicas serving both versions.
        model_name: the model watched.
        new_version: the version just pushed.
        previous_version: the version served before it (None on a first push: the new one's
            error rate is then held to `max_error_rate` and its latency to the ceiling only).
        window_seconds: how long to watch.
        interval_seconds: time between samples.
        thresholds: when the new version counts as worse.
        replay: requests to replay at both versions (empty: metrics only).
        metrics_before: `metrics_baseline` taken before the swap.
        on_sample: called with the report after every sample (a live display).
    """
    report = WatchReport(new_version, previous_version, window_seconds)
    for replica in fleet.replicas:
        figures = ReplicaWatch()
        before = metrics_before.get(replica.address)
        if isinstance(before, MetricsSnapshot):
            figures.metrics_before = before.figures()
        else:
            figures.metrics_error = before or "no metrics snapshot before the swap"
        report.replicas[replica.address] = figures
    start = time.monotonic()
    cursor = 0
    while True:
        _sample(fleet, report, model_name, replay, metrics_before, cursor)
        cursor += REPLAY_PER_SAMPLE
        report.samples += 1
        report.elapsed_seconds = time.monotonic() - start
        over = report.elapsed_seconds >= window_seconds
        report.reasons = _reasons(report, thresholds, latency=over)
        if report.reasons:
            report.verdict = FAILED
        elif over:
            report.verdict = PASSED if _judged(report, thresholds) else INCONCLUSIVE
        if on_sample is not None:
            on_sample(report)
        if report.verdict != WATCHING:
            break
        time.sleep(max(0.0, min(interval_seconds, window_seconds - report.elapsed_seconds)))
    logger.info(
        "Watch of version %d: %s after %.1fs %s",
        new_version,
        report.verdict,
        report.elapsed_seconds,
        "; ".join(report.reasons),
    )
    return report


def _reasons(report: WatchReport, thresholds: WatchThresholds, *, latency: bool) -> list[str]:
    new, previous = report.new_version, report.previous_version
    against = f"version {previous}" if previous is not None else "no previous version"
    reasons = judge(
        report.replayed_new,
        report.replayed_previous,
        thresholds,
        f"replayed requests at version {new} vs {against}",
        latency=latency,
    )
    before, after = report.metrics_before, report.metrics_after
    if after is not None and before is not None:
        reasons += judge(
            after,
            before,
            thresholds,
            "request metrics after the swap vs before it",
            latency=latency,
        )
    return reasons


def _judged(report: WatchReport, thresholds: WatchThresholds) -> bool:
    after = report.metrics_after
    return report.replayed_new.requests >= thresholds.min_requests or (
        after is not None and after.requests >= thresholds.min_requests
    )
