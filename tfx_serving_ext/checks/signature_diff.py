"""Returns what a candidate's signatures break: against a contract, and against the baseline.

`check_contract` holds the model to what clients were promised (partial contracts check only
what they state); `compare_signatures` compares it with the model that serves now. Removed
signatures, inputs and outputs, changed dtypes or methods, incompatible shapes and new inputs
without a default fail unless the `BreakingChangePolicy` allows them; additions pass and are
reported. Nothing here loads or runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping

from tfx_serving_ext.checks.serving_rules import format_shape
from tfx_serving_ext.protocol.signatures import (
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
                            f"shape is {format_shape(have.shape)}, the contract requires "
                            f"{format_shape(tensor.shape)}"
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
                    f"{side} '{key}' changed shape {format_shape(before.shape)} -> "
                    f"{format_shape(after.shape)}, which existing clients "
                    + ("may not send" if side == "input" else "may not expect"),
                    name,
                )
            )
        elif before.shape != after.shape:
            checks.append(
                Check(
                    "shape_relaxed",
                    True,
                    f"{side} '{key}' shape {format_shape(before.shape)} -> "
                    f"{format_shape(after.shape)} (compatible)",
                    name,
                )
            )
    return checks
