"""The default agreement floor: a better retrain passes, wholesale disagreement is refused."""

from __future__ import annotations

from tfx_serving_ext.canary.compare import OutputAgreement
from tfx_serving_ext.canary.judge import CanaryThresholds, judge

LATENCY = {"count": 10, "p50": 1.0, "p99": 2.0}


def _verdict(share: float, thresholds: CanaryThresholds | None = None):
    agreement = OutputAgreement("serving_default", "probabilities", 100, share)
    return judge(
        thresholds or CanaryThresholds(),
        candidate_latency=LATENCY,
        baseline_latency=LATENCY,
        candidate_error_rate=0.0,
        baseline_error_rate=0.0,
        agreements=[agreement],
    )


def test_a_retrain_that_changes_a_fifth_of_the_answers_is_blessed_by_default():
    # Model quality is the Evaluator's call; the canary does not veto a better retrain.
    assert _verdict(0.8).blessed


def test_wholesale_disagreement_is_refused_by_default():
    # What a broken preprocessing step looks like: most answers move.
    verdict = _verdict(0.3)
    assert not verdict.blessed
    assert verdict.reasons == [
        "serving_default/probabilities: top class identical to the baseline on 30.0% of "
        "examples (minimum 50.0%)"
    ]


def test_a_team_can_raise_the_floor_for_a_model_that_should_barely_move():
    assert not _verdict(0.8, CanaryThresholds(min_top_class_agreement=0.9)).blessed
