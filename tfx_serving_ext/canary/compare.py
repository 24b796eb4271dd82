"""Compares the candidate's answers with the baseline's: which signatures can be compared, and
how much their outputs agree.

A signature is compared only when the baseline has it with the same method and the same inputs
(names and dtypes), so the very same request is valid for both; otherwise it is skipped with
the reason. Outputs are compared by name (present in both, same dtype):

- class scores (a numeric output of shape [batch, k>1], or a classify signature): the share of
  examples whose top class is the same (`top_class_agreement`);
- every numeric output: the mean and max absolute difference over all values;
- string outputs: the share of identical values (`top_class_agreement` too).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tfx_serving_ext.protocol.signatures import METHOD_KINDS, summarize_tensor


@dataclass
class SignaturePlan:
    """Whether a candidate signature is compared with the baseline's, and which outputs."""

    name: str
    kind: str
    compared: bool
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    skipped_outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class OutputAgreement:
    """How one output of one signature agrees between candidate and baseline."""

    signature: str
    output: str
    pairs: int = 0
    top_class_agreement: float | None = None
    mean_abs_diff: float | None = None
    max_abs_diff: float | None = None
    skipped: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Returns the agreement as a JSON-ready dict."""
        return asdict(self)


def _inputs(signature) -> dict[str, str]:
    return {k: summarize_tensor(v).dtype for k, v in signature.inputs.items()}


def _outputs(signature) -> dict[str, str]:
    return {k: summarize_tensor(v).dtype for k, v in signature.outputs.items()}


def plan_comparison(
    candidate: Mapping[str, Any], baseline: Mapping[str, Any] | None, names: Iterable[str]
) -> dict[str, SignaturePlan]:
    """Returns, per candidate signature in `names`, whether and what to compare with baseline.

    Args:
        candidate: the candidate's SignatureDefs.
        baseline: the baseline's SignatureDefs (None: no baseline, nothing is compared).
        names: the signatures the canary sends traffic to.
    """
    plans = {}
    for name in names:
        signature = candidate[name]
        kind = METHOD_KINDS.get(signature.method_name, signature.method_name)
        plan = SignaturePlan(name=name, kind=kind, compared=False)
        plans[name] = plan
        if baseline is None:
            plan.reason = "no baseline"
            continue
        other = baseline.get(name)
        if other is None:
            plan.reason = f"the baseline has no signature '{name}' (it has {sorted(baseline)})"
            continue
        if other.method_name != signature.method_name:
            plan.reason = (
                f"method changed: baseline {other.method_name}, candidate {signature.method_name}"
            )
            continue
        mine, theirs = _inputs(signature), _inputs(other)
        if mine != theirs:
            plan.reason = (
                f"inputs differ (candidate {mine}, baseline {theirs}): the same request does not "
                "fit both"
            )
            continue
        plan.compared = True
        if kind == "classify":
            plan.outputs = ["top_class"]
            continue
        if kind == "regress":
            plan.outputs = ["outputs"]
            continue
        mine, theirs = _outputs(signature), _outputs(other)
        for output, dtype in sorted(mine.items()):
            if output not in theirs:
                plan.skipped_outputs[output] = "the baseline has no such output"
            elif theirs[output] != dtype:
                plan.skipped_outputs[output] = f"dtype changed: {theirs[output]} -> {dtype}"
            else:
                plan.outputs.append(output)
        if not plan.outputs:
            plan.compared = False
            plan.reason = "no output in common with the baseline"
    return plans


def _top_classes(array: np.ndarray) -> np.ndarray:
    return np.argmax(array.reshape(array.shape[0], -1), axis=-1)


def _classify_top(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    scores = outputs.get("scores")
    classes = outputs.get("classes")
    if scores is None or scores.size == 0:
        return np.asarray(classes)[:, 0] if classes is not None else np.asarray([])
    best = np.argmax(scores, axis=-1)
    if classes is not None and np.asarray(classes).size:
        return np.asarray(classes)[np.arange(len(best)), best]
    return best


class _Accumulator:
    def __init__(self) -> None:
        self.pairs = 0
        self.rows = 0
        self.same_rows = 0
        self.abs_sum = 0.0
        self.abs_count = 0
        self.abs_max = 0.0
        self.shape_mismatch: str | None = None
        self.classes_like = False

    def add(self, mine: np.ndarray, theirs: np.ndarray, *, top: bool) -> None:
        mine, theirs = np.asarray(mine), np.asarray(theirs)
        if mine.shape != theirs.shape:
            self.shape_mismatch = f"shapes differ: candidate {mine.shape}, baseline {theirs.shape}"
            return
        self.pairs += 1
        if mine.dtype.kind in "fiub":
            diff = np.abs(mine.astype(np.float64) - theirs.astype(np.float64))
            self.abs_sum += float(diff.sum())
            self.abs_count += diff.size
            self.abs_max = max(self.abs_max, float(diff.max()) if diff.size else 0.0)
            if top and mine.ndim == 2 and mine.shape[-1] > 1:
                self.classes_like = True
                self.rows += mine.shape[0]
                self.same_rows += int((_top_classes(mine) == _top_classes(theirs)).sum())
        else:
            self.classes_like = True
            self.rows += mine.size
            self.same_rows += int((mine.reshape(-1) == theirs.reshape(-1)).sum())


def compare_outputs(
    candidate_records: Sequence[Any],
    baseline_records: Sequence[Any],
    plans: Mapping[str, SignaturePlan],
) -> list[OutputAgreement]:
    """Returns the agreement of every compared output, over requests both sides answered.

    Args:
        candidate_records: the candidate's `RequestRecord`s (with outputs).
        baseline_records: the baseline's `RequestRecord`s.
        plans: `plan_comparison`'s result.
    """
    baseline_by_index = {r.index: r for r in baseline_records if r.error is None and r.outputs}
    accumulators: dict[tuple[str, str], _Accumulator] = {}
    for record in candidate_records:
        plan = plans.get(record.signature)
        other = baseline_by_index.get(record.index)
        if plan is None or not plan.compared or other is None or record.error or not record.outputs:
            continue
        for output in plan.outputs:
            acc = accumulators.setdefault((plan.name, output), _Accumulator())
            if plan.kind == "classify":
                acc.add(_classify_top(record.outputs), _classify_top(other.outputs), top=False)
            elif output in record.outputs and output in other.outputs:
                acc.add(record.outputs[output], other.outputs[output], top=True)
    agreements = []
    for plan in plans.values():
        for output in plan.outputs if plan.compared else []:
            acc = accumulators.get((plan.name, output), _Accumulator())
            agreement = OutputAgreement(signature=plan.name, output=output, pairs=acc.pairs)
            if acc.pairs == 0:
                agreement.skipped = acc.shape_mismatch or "no request succeeded on both sides"
            else:
                if acc.classes_like and acc.rows:
                    agreement.top_class_agreement = acc.same_rows / acc.rows
                if acc.abs_count:
                    agreement.mean_abs_diff = acc.abs_sum / acc.abs_count
                    agreement.max_abs_diff = acc.abs_max
            agreements.append(agreement)
    return agreements
