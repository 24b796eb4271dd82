"""Returns the checks a serving interface passes or fails: TF Serving's rules, a contract, a diff.

Each function takes `SignatureSummary`s (see `serving.signatures`) and returns `Check`s; a check
that fails is breaking, a check that passes may still carry news (an added input with a default,
an added signature). Nothing here loads or runs a model.
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
    ServingContract,
    SignatureSummary,
    shapes_compatible,
)


def _change(name: str, breaking: bool, message: str, signature: str) -> Check:
    """Returns a check for a change; when the policy does not count it as breaking, says so."""
    if not breaking:
        message += " (allowed by the breaking-change policy)"
    return Check(name, not breaking, message, signature)


def _shape(shape) -> str:
    return "?" if shape is None else "[" + ",".join(str(d) for d in shape) + "]"


def check_serving_rules(
    summaries: Mapping[str, SignatureSummary], policy: BreakingChangePolicy | None = None
) -> list[Check]:
    """Returns the checks of the rules TF Serving and its REST clients impose on every signature.

    `serving_default` exists; method names are predict/classify/regress; classify and regress
    signatures take exactly one serialized tf.Example (DT_STRING) input and have the outputs TF
    Serving reads; dtypes can cross the REST API; the batch dimension is dynamic.
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
    valid_method = sig.method in METHOD_KINDS
    checks.append(
        Check(
            "method_name_valid",
            valid_method,
            f"method {sig.method}"
            if valid_method
            else f"method name {sig.method!r} is not one of {sorted(METHOD_KINDS)}; "
            "TF Serving cannot route requests to this signature",
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
            f"{side} '{key}' has shape {_shape(t.shape)}"
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
    return [f"output '{key}' has shape {_shape(tensor.shape)}, TF Serving needs {allowed}"]


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


def check_contract(
    summaries: Mapping[str, SignatureSummary], contract: ServingContract
) -> list[Check]:
    """Returns one check per statement of the contract (partial contracts check only what they say).

    An input satisfies a contract shape when it accepts every shape the contract allows; an
    output when every shape it may produce is allowed by the contract.
    """
    checks = []
    for name, expected in contract.signatures.items():
        sig = summaries.get(name)
        if sig is None:
            checks.append(
                Check(
                    "contract_signature",
                    False,
                    f"contract requires signature '{name}', the model has {sorted(summaries)}",
                    name,
                )
            )
            continue
        checks.append(Check("contract_signature", True, "present", name))
        if expected.method is not None:
            ok = sig.method == expected.method
            checks.append(
                Check(
                    "contract_method",
                    ok,
                    f"method {sig.method}"
                    if ok
                    else f"method is {sig.method}, the contract requires {expected.method}",
                    name,
                )
            )
        for side, wanted, actual in (
            ("input", expected.inputs, sig.inputs),
            ("output", expected.outputs, sig.outputs),
        ):
            for key, tensor in wanted.items():
                have = actual.get(key)
                if have is None:
                    checks.append(
                        Check(
                            f"contract_{side}",
                            False,
                            f"contract requires {side} '{key}', the signature has {sorted(actual)}",
                            name,
                        )
                    )
                    continue
                problems = []
                if tensor.dtype is not None and tensor.dtype != have.dtype:
                    problems.append(f"dtype is {have.dtype}, the contract requires {tensor.dtype}")
                if tensor.shape is not None:
                    ok = (
                        shapes_compatible(have.shape, tensor.shape)
                        if side == "input"
                        else shapes_compatible(tensor.shape, have.shape)
                    )
                    if not ok:
                        problems.append(
                            f"shape is {_shape(have.shape)}, the contract requires "
                            f"{_shape(tensor.shape)}"
                        )
                checks.append(
                    Check(
                        f"contract_{side}",
                        not problems,
                        f"{side} '{key}': " + ("; ".join(problems) or have.describe()),
                        name,
                    )
                )
    return checks


def compare_signatures(
    baseline: Mapping[str, SignatureSummary],
    candidate: Mapping[str, SignatureSummary],
    policy: BreakingChangePolicy | None = None,
) -> list[Check]:
    """Returns the differences between the serving baseline and a candidate, as checks.

    Removed signatures, inputs and outputs, changed dtypes or methods, incompatible shapes and
    new inputs without a default fail (unless the policy allows them); additions pass and are
    reported.
    """
    policy = policy or BreakingChangePolicy()
    checks = []
    for name in sorted(set(candidate) - set(baseline)):
        checks.append(Check("added_signature", True, f"signature '{name}' added", name))
    for name, old in baseline.items():
        new = candidate.get(name)
        if new is None:
            checks.append(
                _change(
                    "removed_signature",
                    policy.removed_signature,
                    f"signature '{name}' was removed; clients calling it would get errors",
                    name,
                )
            )
            continue
        if old.method != new.method:
            checks.append(
                _change(
                    "method_changed",
                    policy.method_change,
                    f"method changed {old.method} -> {new.method}; clients must change the "
                    "call they make",
                    name,
                )
            )
        checks.extend(_compare_tensors(name, "input", old, new, policy))
        checks.extend(_compare_tensors(name, "output", old, new, policy))
    return checks


def _compare_tensors(name, side, old: SignatureSummary, new: SignatureSummary, policy) -> list:
    checks = []
    old_t, new_t = (old.inputs, new.inputs) if side == "input" else (old.outputs, new.outputs)
    for key in sorted(set(new_t) - set(old_t)):
        if side == "input" and key not in new.defaults:
            checks.append(
                _change(
                    "added_required_input",
                    policy.added_required_input,
                    f"input '{key}' added without a default; existing clients do not send it "
                    "and would get INVALID_ARGUMENT",
                    name,
                )
            )
        else:
            note = " (has a default)" if side == "input" else ""
            checks.append(Check(f"added_{side}", True, f"{side} '{key}' added{note}", name))
    for key, before in old_t.items():
        after = new_t.get(key)
        if after is None:
            breaking = policy.removed_input if side == "input" else policy.removed_output
            checks.append(_change(f"removed_{side}", breaking, f"{side} '{key}' was removed", name))
            continue
        if before.dtype != after.dtype:
            checks.append(
                _change(
                    "dtype_changed",
                    policy.dtype_change,
                    f"{side} '{key}' changed dtype {before.dtype} -> {after.dtype}",
                    name,
                )
            )
        if before.encoding != after.encoding:
            checks.append(
                _change(
                    "encoding_changed",
                    policy.dtype_change,
                    f"{side} '{key}' changed from a {before.encoding} to a {after.encoding} "
                    "tensor, which existing clients "
                    + ("do not send" if side == "input" else "do not expect"),
                    name,
                )
            )
        ok = (
            shapes_compatible(after.shape, before.shape)
            if side == "input"
            else shapes_compatible(before.shape, after.shape)
        )
        if not ok:
            checks.append(
                _change(
                    "shape_incompatible",
                    policy.shape_change,
                    f"{side} '{key}' changed shape {_shape(before.shape)} -> "
                    f"{_shape(after.shape)}, which existing clients "
                    + ("may not send" if side == "input" else "may not expect"),
                    name,
                )
            )
        elif before.shape != after.shape:
            checks.append(
                Check(
                    "shape_relaxed",
                    True,
                    f"{side} '{key}' shape {_shape(before.shape)} -> {_shape(after.shape)} "
                    "(compatible)",
                    name,
                )
            )
    return checks


def format_checks(checks: list[Check], *, only_news: bool = False) -> str:
    """Returns one line per check: `FAIL`/`ok`/`+`, the signature and the message.

    With `only_news`, passing checks that report nothing new (plain "present" lines) are left out.
    """
    lines = []
    for check in checks:
        if only_news and check.passed and not check.name.startswith(("added", "shape_relaxed")):
            continue
        mark = "ok  " if check.passed else "FAIL"
        if check.passed and check.name.startswith("added"):
            mark = "+   "
        where = f"[{check.signature}] " if check.signature else ""
        lines.append(f"{mark} {where}{check.message}")
    return "\n".join(lines)
