"""The validation library on real SavedModels: what is blessed, what is refused, and why."""

from __future__ import annotations

import pytest

from tfx_serving_ext.checks.model_validation import validate_model
from tfx_serving_ext.protocol.saved_model import SavedModelError
from tfx_serving_ext.protocol.signatures import (
    METHODS,
    BreakingChangePolicy,
    ContractError,
    ServingContract,
    SignatureContract,
    TensorContract,
)


def _failed(report) -> list[str]:
    return [f"[{c.signature}] {c.message}" for c in report.failures]


def test_compatible_retrain_is_blessed(toy_models, toy_examples):
    report = validate_model(
        toy_models["retrain"], baseline_uri=toy_models["baseline"], examples=toy_examples
    )
    assert report.blessed, _failed(report)
    ran = [c for c in report.checks if c.name == "runs_on_examples"]
    assert {c.signature for c in ran} == {"serving_default", "predict_xw"}
    assert all("answered a batch of 4 examples" in c.message for c in ran)


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("removed_input", "[predict_xw] input 'w' was removed"),
        ("dtype_changed", "[predict_xw] input 'x' changed dtype DT_FLOAT -> DT_DOUBLE"),
        ("no_serving_default", "no 'serving_default' signature"),
        ("static_batch", "input 'x' has shape [8]"),
    ],
)
def test_breaking_change_is_refused_with_its_message(toy_models, variant, expected):
    report = validate_model(toy_models[variant], baseline_uri=toy_models["baseline"])
    assert not report.blessed
    assert any(expected in line for line in _failed(report)), _failed(report)


def test_static_batch_is_refused_even_without_a_baseline(toy_models):
    report = validate_model(toy_models["static_batch"])
    (failure,) = report.failures
    assert failure.name == "dynamic_batch" and "first dimension must be -1" in failure.message


def test_classify_signature_with_float_input_is_refused(toy_models, toy_examples):
    report = validate_model(toy_models["float_classify"], examples=toy_examples)
    messages = _failed(report)
    assert any(
        m.startswith("[classify_x_to_y] classify signature must have exactly one DT_STRING input")
        and "'inputs' DT_FLOAT[-1]" in m
        for m in messages
    ), messages


def test_tf1_classify_and_regress_signatures_are_blessed_and_run(toy_models, toy_examples):
    report = validate_model(toy_models["half_plus_two"], examples=toy_examples)
    assert report.blessed, _failed(report)
    ran = {c.signature for c in report.checks if c.name == "runs_on_examples"}
    assert ran == {"serving_default", "classify_x_to_y", "regress_x_to_y"}


def test_signature_failing_on_examples_is_refused(toy_models, toy_examples):
    report = validate_model(toy_models["fails_at_run_time"], examples=toy_examples)
    messages = _failed(report)
    assert any("x must be negative" in m for m in messages), messages


def test_policy_can_allow_a_removed_input(toy_models):
    policy = BreakingChangePolicy(removed_input=False)
    report = validate_model(
        toy_models["removed_input"], baseline_uri=toy_models["baseline"], policy=policy
    )
    assert report.blessed
    (removed,) = [c for c in report.checks if c.name == "removed_input"]
    assert removed.passed
    assert removed.message == "input 'w' was removed (allowed by the breaking-change policy)"


def test_added_input_without_default_is_breaking_and_added_signature_is_reported(toy_models):
    report = validate_model(toy_models["baseline"], baseline_uri=toy_models["removed_input"])
    assert any("input 'w' added without a default" in m for m in _failed(report))
    report = validate_model(toy_models["no_serving_default"], baseline_uri=toy_models["baseline"])
    assert any(c.name == "added_signature" and c.passed for c in report.checks)


def test_partial_contract_checks_only_what_it_states(toy_models):
    contract = ServingContract.from_value(
        {"predict_xw": {"method": "predict", "inputs": {"x": {"dtype": "float32"}}}}
    )
    assert validate_model(toy_models["baseline"], contract=contract).blessed
    report = validate_model(toy_models["dtype_changed"], contract=contract)
    assert _failed(report) == [
        "[predict_xw] input 'x': dtype is DT_DOUBLE, the contract requires DT_FLOAT"
    ]
    shaped = ServingContract(
        signatures={
            "serving_default": SignatureContract(
                method="classify", outputs={"y": TensorContract("float32", [None, 3])}
            )
        }
    )
    failed = _failed(validate_model(toy_models["baseline"], contract=shaped))
    assert any("method is tensorflow/serving/predict" in m for m in failed)
    assert any("output 'y': shape is [-1], the contract requires [-1,3]" in m for m in failed)


def test_contract_round_trips_through_json_and_rejects_nonsense():
    contract = ServingContract(
        signatures={"s": SignatureContract("regress", inputs={"i": TensorContract("string")})}
    )
    assert ServingContract.from_json(contract.to_json()) == contract
    with pytest.raises(ContractError, match="unknown method 'guess'"):
        ServingContract.from_value({"s": {"method": "guess"}})
    with pytest.raises(ContractError, match="not valid JSON"):
        ServingContract.from_json("{'s': 1}")


def test_unreadable_model_raises(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"not a proto at all \xff\xfe")
    with pytest.raises(SavedModelError, match="cannot be parsed"):
        validate_model(tmp_path)


def test_missing_tag_set_is_a_refusal(toy_models):
    report = validate_model(toy_models["baseline"], tags=["serve", "gpu"])
    (failure,) = report.failures
    assert failure.name == "tag_set_exists" and "no meta graph with tag set" in failure.message


def _example_signature(method: str, inputs: dict, outputs: dict):
    from tfx_serving_ext.protocol.signatures import METHODS, SignatureSummary, TensorSummary

    def tensors(spec):
        return {k: TensorSummary(dtype, shape) for k, (dtype, shape) in spec.items()}

    return SignatureSummary("s", METHODS[method], tensors(inputs), tensors(outputs))


_EXAMPLES_IN = {"inputs": ("DT_STRING", (-1,))}


@pytest.mark.parametrize(
    ("method", "inputs", "outputs", "expected"),
    [
        # TF Serving feeds the input named "inputs" (FAILED_PRECONDITION otherwise).
        (
            "classify",
            {"examples": ("DT_STRING", (-1,))},
            {"scores": ("DT_FLOAT", (-1, 3))},
            "classify signature's input is named 'examples'; TF Serving's Classify feeds the "
            "input named 'inputs'",
        ),
        (
            "classify",
            _EXAMPLES_IN,
            {
                "classes": ("DT_STRING", (-1, 3)),
                "scores": ("DT_FLOAT", (-1, 3)),
                "logits": ("DT_FLOAT", (-1, 3)),
            },
            "3 outputs ['classes', 'logits', 'scores']; TF Serving's Classify refuses more "
            "than two",
        ),
        (
            "classify",
            _EXAMPLES_IN,
            {"scores": ("DT_FLOAT", (-1,))},
            "output 'scores' has shape [-1], TF Serving needs [batch, classes]",
        ),
        (
            "regress",
            _EXAMPLES_IN,
            {"outputs": ("DT_FLOAT", (-1, 2))},
            "output 'outputs' has shape [-1,2], TF Serving needs [batch] or [batch, 1]",
        ),
        (
            "regress",
            _EXAMPLES_IN,
            {"outputs": ("DT_FLOAT", (-1,)), "stddev": ("DT_FLOAT", (-1,))},
            "2 outputs ['outputs', 'stddev']; TF Serving's Regress refuses more than one",
        ),
    ],
)
def test_classify_and_regress_signatures_tf_serving_cannot_run_are_refused(
    method, inputs, outputs, expected
):
    from tfx_serving_ext.checks.signature_checks import check_serving_rules

    checks = check_serving_rules({"serving_default": _example_signature(method, inputs, outputs)})
    failed = [c.message for c in checks if not c.passed]
    assert len(failed) == 1 and expected in failed[0], failed


@pytest.mark.parametrize(
    ("method", "outputs"),
    [
        ("classify", {"classes": ("DT_STRING", (-1, 3)), "scores": ("DT_FLOAT", (-1, 3))}),
        ("classify", {"scores": ("DT_FLOAT", None)}),
        ("regress", {"outputs": ("DT_FLOAT", (-1,))}),
        ("regress", {"outputs": ("DT_FLOAT", (-1, 1))}),
    ],
)
def test_classify_and_regress_signatures_tf_serving_runs_pass(method, outputs):
    from tfx_serving_ext.checks.signature_checks import check_serving_rules

    checks = check_serving_rules(
        {"serving_default": _example_signature(method, _EXAMPLES_IN, outputs)}
    )
    assert all(c.passed for c in checks), [c.message for c in checks if not c.passed]


def test_a_dense_input_becoming_sparse_is_refused():
    from tfx_serving_ext.checks.signature_checks import compare_signatures
    from tfx_serving_ext.protocol.signatures import SignatureSummary, TensorSummary

    def signature(encoding):
        inputs = {"x": TensorSummary("DT_FLOAT", (-1, 4), encoding)}
        return {"s": SignatureSummary("s", METHODS["predict"], inputs, {})}

    checks = compare_signatures(signature("dense"), signature("sparse"))
    failed = [c.message for c in checks if not c.passed]
    assert failed == [
        "input 'x' changed from a dense to a sparse tensor, which existing clients do not send"
    ]
