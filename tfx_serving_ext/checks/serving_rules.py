"""Returns the checks of the rules TF Serving applies to every signature it serves.

`serving_default` exists; unusual method names are noted (TF Serving does not check them by
default); classify and regress signatures take one serialized tf.Example input and have the
outputs TF Serving reads; dtypes can cross the REST API; the batch dimension is dynamic.
Nothing here loads or runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping

from tfx_serving_ext.protocol.signatures import (
    CLASSIFY_OUTPUTS,
    DEFAULT_SIGNATURE,
    EXAMPLE_INPUT,
    METHOD_KINDS,
    REGRESS_OUTPUT,
    REST_DTYPES,
    BreakingChangePolicy,
    Check,
    SignatureSummary,
)


def format_shape(shape) -> str:
    """Returns a shape as the checks' messages write it: `[-1,4]`, or `?` for unknown rank."""
    return "?" if shape is None else "[" + ",".join(str(d) for d in shape) + "]"


def check_serving_rules(
    summaries: Mapping[str, SignatureSummary], policy: BreakingChangePolicy | None = None
) -> list[Check]:
    """Returns the checks of the rules TF Serving and its REST clients impose on every signature.

    `serving_default` exists; unusual method names are noted (TF Serving does not check them by
    default); classify and regress signatures take exactly one serialized tf.Example (DT_STRING)
    input and have the outputs TF Serving reads; dtypes can cross the REST API; the batch
    dimension is dynamic.
    """
    policy = policy or BreakingChangePolicy()
    checks = []
    if policy.require_serving_default:
        present = DEFAULT_SIGNATURE in summaries
        checks.append(
            Check(
                "serving_default_exists",
                present,
                f"signature '{DEFAULT_SIGNATURE}' is present"
                if present
                else f"no '{DEFAULT_SIGNATURE}' signature (the model has {sorted(summaries)}); "
                "clients that name no signature would get FAILED_PRECONDITION",
            )
        )
    for name, sig in summaries.items():
        checks.extend(_check_signature(name, sig, policy))
    return checks


def _check_signature(name: str, sig: SignatureSummary, policy: BreakingChangePolicy) -> list:
    checks = []
    # TF Serving checks method names only with --enable_signature_method_name_check (default
    # off): Predict runs a signature of any method name, so an unusual one is noted, not refused.
    standard_method = sig.method in METHOD_KINDS
    checks.append(
        Check(
            "method_name_valid",
            True,
            f"method {sig.method}"
            if standard_method
            else f"method name {sig.method!r} is not one of {sorted(METHOD_KINDS)}; TF Serving "
            "serves it through Predict only, and refuses it under "
            "--enable_signature_method_name_check",
            name,
        )
    )
    if sig.kind in ("classify", "regress"):
        checks.append(_check_example_input(name, sig))
        checks.append(_check_example_outputs(name, sig))
    if policy.require_rest_dtypes:
        bad = [
            f"{side} '{key}' is {t.dtype}"
            for side, tensors in (("input", sig.inputs), ("output", sig.outputs))
            for key, t in tensors.items()
            if t.dtype not in REST_DTYPES
        ]
        checks.append(
            Check(
                "rest_dtypes",
                not bad,
                "every dtype can be sent over the REST API"
                if not bad
                else "; ".join(bad) + ": TF Serving's REST API cannot convert this dtype to or "
                "from JSON; use one of " + ", ".join(sorted(REST_DTYPES)),
                name,
            )
        )
    if policy.require_dynamic_batch:
        static = [
            f"{side} '{key}' has shape {format_shape(t.shape)}"
            for side, tensors in (("input", sig.inputs), ("output", sig.outputs))
            for key, t in tensors.items()
            if t.shape is not None and (len(t.shape) == 0 or t.shape[0] != -1)
        ]
        checks.append(
            Check(
                "dynamic_batch",
                not static,
                "the batch dimension is dynamic"
                if not static
                else "; ".join(static) + ": the first dimension must be -1 (None) so that "
                "clients can send any batch size; export with a TensorSpec of shape [None, ...]",
                name,
            )
        )
    return checks


def _check_example_input(name: str, sig: SignatureSummary) -> Check:
    inputs = list(sig.inputs.items())
    ok = len(inputs) == 1 and inputs[0][1].dtype == "DT_STRING"
    if ok and inputs[0][0] != EXAMPLE_INPUT:
        return Check(
            "example_input",
            False,
            f"{sig.kind} signature's input is named '{inputs[0][0]}'; TF Serving's "
            f"{sig.kind.capitalize()} feeds the input named '{EXAMPLE_INPUT}' and refuses the "
            f"request (FAILED_PRECONDITION); rename it to '{EXAMPLE_INPUT}'",
            name,
        )
    if ok:
        message = f"single serialized tf.Example input '{inputs[0][0]}'"
    else:
        found = ", ".join(f"'{k}' {t.describe()}" for k, t in inputs) or "no inputs"
        message = (
            f"{sig.kind} signature must have exactly one DT_STRING input holding serialized "
            f"tf.Examples, found {found}; export it with tf.io.parse_example inside, or make it "
            "a predict signature"
        )
    return Check("example_input", ok, message, name)


def _rank_problem(key: str, tensor, allowed: str, ok) -> list[str]:
    """Returns a problem when the output's known shape is not one TF Serving can read."""
    if tensor.shape is None or ok(tensor.shape):
        return []
    shape = format_shape(tensor.shape)
    return [f"output '{key}' has shape {shape}, TF Serving needs {allowed}"]


def _check_example_outputs(name: str, sig: SignatureSummary) -> Check:
    if sig.kind == "classify":
        problems = [
            f"output '{k}' is {sig.outputs[k].dtype}, TF Serving reads it as {dtype}"
            for k, dtype in CLASSIFY_OUTPUTS.items()
            if k in sig.outputs and sig.outputs[k].dtype != dtype
        ]
        for key in CLASSIFY_OUTPUTS:
            if key in sig.outputs:
                problems += _rank_problem(
                    key, sig.outputs[key], "[batch, classes]", lambda s: len(s) == 2
                )
        if not any(k in sig.outputs for k in CLASSIFY_OUTPUTS):
            problems.append(
                f"no 'classes' or 'scores' output (found {sorted(sig.outputs)}); "
                "TF Serving's Classify reads those keys"
            )
        elif len(sig.outputs) > 2:
            problems.append(
                f"{len(sig.outputs)} outputs {sorted(sig.outputs)}; TF Serving's Classify "
                "refuses more than two (only 'classes' and 'scores')"
            )
    else:
        out = sig.outputs.get(REGRESS_OUTPUT)
        if out is None:
            problems = [
                f"no '{REGRESS_OUTPUT}' output (found {sorted(sig.outputs)}); "
                "TF Serving's Regress reads that key"
            ]
        else:
            problems = []
            if out.dtype != "DT_FLOAT":
                problems.append(
                    f"output '{REGRESS_OUTPUT}' is {out.dtype}, TF Serving needs DT_FLOAT"
                )
            problems += _rank_problem(
                REGRESS_OUTPUT,
                out,
                "[batch] or [batch, 1]",
                lambda s: len(s) == 1 or (len(s) == 2 and s[1] == 1),
            )
            if len(sig.outputs) > 1:
                problems.append(
                    f"{len(sig.outputs)} outputs {sorted(sig.outputs)}; TF Serving's Regress "
                    f"refuses more than one (only '{REGRESS_OUTPUT}')"
                )
    return Check(
        "example_outputs",
        not problems,
        "; ".join(problems) or f"{sig.kind} outputs are what TF Serving reads",
        name,
    )
