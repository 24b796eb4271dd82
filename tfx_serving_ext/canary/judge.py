"""The canary's judgement: thresholds, one check per threshold, a verdict and its reasons.

Every threshold is optional (None switches it off). The defaults refuse a candidate that fails
any request, whose median or p99 latency is more than 1.5x / 2x the baseline's (and more than
2 ms above it: below that a ratio is scheduling noise), or whose top class agrees with the
baseline's on fewer than half of the examples. Absolute latencies and the mean absolute
difference have no default, because no value fits every model; set them for yours.

Why agreement is only a floor of 50 %: whether a retrain predicts *better* is model quality, the
Evaluator's job (it has the labels); a legitimately better retrain may well change 10 % of the
answers, and a 95 % agreement rule would block it. What the canary is placed to catch is a
model that serves something else than it was trained for (a broken or missing preprocessing
step, shuffled feature names, a wrong vocabulary), and that shows as wholesale disagreement,
far below one half. Raise it for a model whose retrains should barely move (e.g. 0.9).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tfx_serving_ext.config_fields import dataclass_from_mapping


class ThresholdsError(ValueError):
    """Thresholds that cannot be understood (unknown name, wrong type, out of range)."""


@dataclass(frozen=True)
class CanaryThresholds:
    """Limits a candidate must stay within; None turns a check off."""

    max_error_rate: float | None = 0.0
    max_p50_latency_ms: float | None = None
    max_p99_latency_ms: float | None = None
    max_p50_ratio: float | None = 1.5
    max_p99_ratio: float | None = 2.0
    # A ratio check fails only when the candidate's percentile also exceeds the baseline's by
    # more than this many ms: on millisecond models a 1.5x ratio is scheduling noise.
    ratio_slack_ms: float = 2.0
    # The p99 ratio is judged only when each side measured at least this many requests: below
    # about 100 a "p99" is the single slowest request, i.e. one scheduling hiccup.
    min_requests_for_p99_ratio: int = 100
    # A floor against wholesale breakage, not a quality bar: see the module docstring.
    min_top_class_agreement: float | None = 0.5
    max_mean_abs_diff: float | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and (not isinstance(value, int | float) or value < 0):
                raise ThresholdsError(f"{item.name} must be a non-negative number, got {value!r}")
        for name in ("max_error_rate", "min_top_class_agreement"):
            value = getattr(self, name)
            if value is not None and value > 1:
                raise ThresholdsError(f"{name} is a share between 0 and 1, got {value}")

    @property
    def compares_with_baseline(self) -> bool:
        """Returns True when any threshold judges the candidate against the baseline."""
        return any(
            value is not None
            for value in (
                self.max_p50_ratio,
                self.max_p99_ratio,
                self.min_top_class_agreement,
                self.max_mean_abs_diff,
            )
        )

    @classmethod
    def from_value(
        cls, value: CanaryThresholds | Mapping[str, Any] | str | None
    ) -> CanaryThresholds:
        """Returns thresholds from themselves, a dict, JSON, or None (the defaults).

        Raises:
            ThresholdsError: not JSON, unknown keys or invalid values.
        """
        return dataclass_from_mapping(cls, value, what="thresholds", error=ThresholdsError)

    def to_json(self) -> str:
        """Returns the thresholds as JSON (None for a check that is off)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Check:
    """One threshold applied to one measurement."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str

    def to_json(self) -> dict[str, Any]:
        """Returns the check as a JSON-ready dict."""
        return asdict(self)


@dataclass
class Verdict:
    """Blessed or not, every check, and the reasons a person reads first."""

    blessed: bool
    checks: list[Check] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Returns the verdict as a JSON-ready dict."""
        return {
            "blessed": self.blessed,
            "reasons": self.reasons,
            "notes": self.notes,
            "checks": [c.to_json() for c in self.checks],
        }


def refuse(reason: str, *, notes: Sequence[str] = ()) -> Verdict:
    """Returns a not-blessed verdict for a candidate that could not be measured at all."""
    return Verdict(blessed=False, reasons=[reason], notes=list(notes))


def judge(
    thresholds: CanaryThresholds,
    *,
    candidate_latency: Mapping[str, Any] | None,
    baseline_latency: Mapping[str, Any] | None,
    candidate_error_rate: float | None,
    baseline_error_rate: float | None = None,
    agreements: Sequence[Any] = (),
    notes: Sequence[str] = (),
) -> Verdict:
    """Returns the verdict of applying `thresholds` to the measurements.

    A threshold is never passed by a measurement that was not made: a candidate that answered
    no request is refused whatever the thresholds; a baseline that answered none, or an output
    that could not be compared (no request succeeded on both sides, shapes differ), fails the
    comparison while any threshold against the baseline is on.

    Args:
        thresholds: the limits.
        candidate_latency: `latency_summary` of the candidate (None: no traffic was sent).
        baseline_latency: `latency_summary` of the baseline (None: no baseline traffic).
        candidate_error_rate: failed share of the candidate's requests (None: no traffic).
        baseline_error_rate: failed share of the baseline's requests (None: no traffic).
        agreements: `OutputAgreement`s of the compared outputs.
        notes: what a reader should know (load-only run, skipped comparisons).
    """
    checks: list[Check] = []
    t = thresholds
    if candidate_error_rate is not None and candidate_error_rate >= 1.0:
        checks.append(
            Check(
                "candidate_answered",
                False,
                0.0,
                None,
                "the candidate answered none of its requests: nothing about it was measured",
            )
        )
    compares = t.compares_with_baseline
    if baseline_error_rate is not None and baseline_error_rate >= 1.0 and compares:
        checks.append(
            Check(
                "baseline_answered",
                False,
                0.0,
                None,
                "the baseline answered none of its requests, so the candidate was not compared "
                "with it (latency ratios, agreement); see the baseline's errors in the report",
            )
        )
    if candidate_error_rate is not None and t.max_error_rate is not None:
        checks.append(
            Check(
                "error_rate",
                candidate_error_rate <= t.max_error_rate,
                candidate_error_rate,
                t.max_error_rate,
                f"candidate error rate {candidate_error_rate:.2%} (limit {t.max_error_rate:.2%})",
            )
        )
    notes = list(notes)
    for percentile in ("p50", "p99"):
        checks.extend(_latency_checks(t, percentile, candidate_latency, baseline_latency, notes))
    agreement_on = t.min_top_class_agreement is not None or t.max_mean_abs_diff is not None
    for agreement in agreements:
        where = f"{agreement.signature}/{agreement.output}"
        if agreement.pairs == 0 and agreement_on:
            checks.append(
                Check(
                    f"agreement_measured[{where}]",
                    False,
                    0,
                    None,
                    f"{where}: not compared with the baseline ({agreement.skipped})",
                )
            )
        share = agreement.top_class_agreement
        if share is not None and t.min_top_class_agreement is not None:
            checks.append(
                Check(
                    f"top_class_agreement[{where}]",
                    share >= t.min_top_class_agreement,
                    share,
                    t.min_top_class_agreement,
                    f"{where}: top class identical to the baseline on {share:.1%} of examples "
                    f"(minimum {t.min_top_class_agreement:.1%})",
                )
            )
        diff = agreement.mean_abs_diff
        if diff is not None and t.max_mean_abs_diff is not None:
            checks.append(
                Check(
                    f"mean_abs_diff[{where}]",
                    diff <= t.max_mean_abs_diff,
                    diff,
                    t.max_mean_abs_diff,
                    f"{where}: mean absolute difference from the baseline {diff:.6g} "
                    f"(limit {t.max_mean_abs_diff:.6g})",
                )
            )
    reasons = [c.message for c in checks if not c.passed]
    return Verdict(blessed=not reasons, checks=checks, reasons=reasons, notes=list(notes))


def _latency_checks(
    t: CanaryThresholds, percentile: str, candidate, baseline, notes: list[str]
) -> list[Check]:
    checks = []
    mine = (candidate or {}).get(percentile)
    theirs = (baseline or {}).get(percentile)
    limit = getattr(t, f"max_{percentile}_latency_ms")
    if mine is not None and limit is not None:
        checks.append(
            Check(
                f"{percentile}_latency_ms",
                mine <= limit,
                mine,
                limit,
                f"candidate {percentile} latency {mine:.2f} ms (limit {limit:.2f} ms)",
            )
        )
    max_ratio = getattr(t, f"max_{percentile}_ratio")
    if mine is not None and theirs and max_ratio is not None and percentile == "p99":
        fewest = min((candidate or {}).get("count", 0), (baseline or {}).get("count", 0))
        if fewest < t.min_requests_for_p99_ratio:
            notes.append(
                f"p99 ratio not judged: {fewest} measured requests on a side, fewer than "
                f"min_requests_for_p99_ratio ({t.min_requests_for_p99_ratio}); send more "
                "requests to judge it"
            )
            return checks
    if mine is not None and theirs and max_ratio is not None:
        ratio = mine / theirs
        within_slack = mine - theirs <= t.ratio_slack_ms
        checks.append(
            Check(
                f"{percentile}_ratio",
                ratio <= max_ratio or within_slack,
                ratio,
                max_ratio,
                f"candidate {percentile} latency {mine:.2f} ms is {ratio:.2f}x the baseline's "
                f"{theirs:.2f} ms (limit {max_ratio:.2f}x"
                + (f"; within the {t.ratio_slack_ms} ms slack)" if within_slack else ")"),
            )
        )
    return checks
