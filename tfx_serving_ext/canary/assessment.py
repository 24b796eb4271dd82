"""Judging a measured canary run and writing what was measured into the report.

`judge_measurement` turns a `Measurement` into the verdict (refusing what could not be
measured), filling the report's latency, error, traffic and comparison sections on the way;
`record_measurement` adds where it ran and how the candidate and baseline loaded.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tfx_serving_ext.canary.compare import compare_outputs
from tfx_serving_ext.canary.config import CanaryConfig
from tfx_serving_ext.canary.judge import Verdict, judge, refuse
from tfx_serving_ext.canary.load_driver import LoadResult, latency_summary
from tfx_serving_ext.canary.measure import Measurement


def judge_measurement(
    run: Measurement,
    config: CanaryConfig,
    plans: dict[str, Any],
    report: dict[str, Any],
    notes: list[str],
) -> Verdict:
    """Returns the verdict on what `run` measured; fills the report's measurement sections.

    A candidate that did not load, or that no request reached, is refused; a baseline that did
    not become available refuses the candidate while any threshold compares with it (otherwise
    only the absolute thresholds apply, and `notes` says so).

    Args:
        run: what the attempt(s) measured.
        config: the canary's settings (thresholds, concurrency).
        plans: the comparison plan per signature (`compare.plan_comparison`).
        report: the report being assembled; latency_ms, errors, traffic, comparison and
            requests are added when traffic was sent.
        notes: what a reader should know; appended to.
    """
    if run.load_error:
        return refuse(f"the candidate did not load: {condense_error(run.load_error)}", notes=notes)
    if run.baseline_unavailable:
        # As for a baseline that answers nothing: no threshold passes on a comparison not made.
        if config.thresholds.compares_with_baseline:
            return refuse(
                f"the baseline (what serves now) did not become available in the canary's server "
                f"({run.baseline_unavailable}), so the candidate could not be compared with it; "
                "to judge on absolute thresholds alone, set max_p50_ratio, max_p99_ratio, "
                "min_top_class_agreement and max_mean_abs_diff to null",
                notes=notes,
            )
        notes.append(
            f"the baseline was not available ({run.baseline_unavailable}); only absolute "
            "thresholds were applied"
        )
    load = run.load
    if load is None:
        return judge(
            config.thresholds,
            candidate_latency=None,
            baseline_latency=None,
            candidate_error_rate=None,
            notes=notes,
        )
    if load.stopped_early:
        notes.append(load.stopped_early)
    if not load.for_target("candidate"):
        return refuse(
            "no request reached the candidate: nothing about it was measured"
            + (f" ({load.stopped_early})" if load.stopped_early else ""),
            notes=notes,
        )
    sides = ["candidate"] + (["baseline"] if load.for_target("baseline") else [])
    report["latency_ms"] = {side: latency_summary(load.latencies_ms(side)) for side in sides}
    report["errors"] = {side: error_summary(load, side) for side in sides}
    report["traffic"] = {
        "requests_planned": load.requests_planned,
        "requests_issued": load.requests_issued,
        "sends": len(load.records),
        "wall_seconds": round(load.wall_seconds, 3),
        "sends_per_second": round(load.requests_per_second(), 1),
        "concurrency": config.concurrency,
        "stopped_early": load.stopped_early,
    }
    agreements = []
    if "baseline" in sides:
        agreements = compare_outputs(
            load.for_target("candidate"), load.for_target("baseline"), plans
        )
    report["comparison"] = {
        "signatures": [asdict(p) for p in plans.values()],
        "agreements": [a.to_json() for a in agreements],
    }
    report["requests"] = [r.to_json() for r in load.records]
    verdict = judge(
        config.thresholds,
        candidate_latency=report["latency_ms"]["candidate"],
        baseline_latency=report["latency_ms"].get("baseline"),
        candidate_error_rate=report["errors"]["candidate"]["rate"],
        baseline_error_rate=(report["errors"].get("baseline") or {}).get("rate"),
        agreements=agreements,
        notes=notes,
    )
    if not verdict.blessed:
        # The cause, not only the rate: a reader of the log or the CLI sees why requests failed.
        for side in sides:
            for count, message in top_errors(report["errors"][side]):
                verdict.reasons.append(f"{side} error ({count}x): {message}")
    return verdict


# Lines of a TensorFlow error that say where, not what (the stack, the node, the kernel list).
_NOISE_PREFIXES = (
    "Detected at node",
    "<stack traces unavailable>",
    "[[",
    "Registered devices",
    "Registered kernels",
    "<no registered kernels>",
)
_MAX_MESSAGE_CHARS = 400


def condense_error(message: str) -> str:
    """Returns a TensorFlow / TF Serving error message on one line, without its stack noise."""
    lines = [line.strip() for line in message.splitlines()]
    kept = [line for line in lines if line and not line.startswith(_NOISE_PREFIXES)]
    text = " ".join(kept) or message.strip()
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 3] + "..."
    return text


def top_errors(summary: dict[str, Any], limit: int = 3) -> list[tuple[int, str]]:
    """Returns the `limit` most frequent error messages of an `error_summary`, condensed."""
    by_message = summary.get("by_message") or {}
    ranked = sorted(by_message.items(), key=lambda item: -item[1])[:limit]
    return [(count, condense_error(message)) for message, count in ranked]


def error_summary(load: LoadResult, side: str) -> dict[str, Any]:
    records = load.for_target(side)
    by_message: dict[str, int] = {}
    for record in records:
        if record.error:
            by_message[record.error] = by_message.get(record.error, 0) + 1
    count = sum(by_message.values())
    return {
        "total": len(records),
        "count": count,
        "rate": count / len(records) if records else None,
        "by_message": by_message,
    }


def record_measurement(report: dict[str, Any], run: Measurement, verdict: Verdict) -> None:
    """Adds the verdict, where the run happened and how candidate and baseline loaded."""
    report["verdict"] = verdict.to_json()
    report["backend"] = {
        "name": run.backend_name,
        "description": run.backend,
        "endpoint": run.endpoint,
        "timings": run.timings,
    }
    report["attempts"] = run.attempts
    report["candidate"].update(
        target=run.candidate_target,
        version=run.candidate_version,
        load_seconds=run.load_seconds,
        load_error=run.load_error,
    )
    if report["baseline"] is None and run.baseline_target is not None:
        report["baseline"] = {"model_dir": None}
    if report["baseline"] is not None:
        report["baseline"].update(target=run.baseline_target, unavailable=run.baseline_unavailable)
