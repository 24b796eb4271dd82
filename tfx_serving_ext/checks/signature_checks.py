"""Returns the checks a serving interface passes or fails: TF Serving's rules, a contract, a diff.

Each function takes `SignatureSummary`s (see `protocol.signatures`) and returns `Check`s; a check
that fails is breaking, a check that passes may still carry news (an added input with a default,
an added signature). Nothing here loads or runs a model.

TF Serving's rules live in `serving_rules`, the contract and baseline diff in `signature_diff`;
this module formats checks for people and re-exports both, so callers import from one place.
"""

from __future__ import annotations

from tfx_serving_ext.checks.serving_rules import check_serving_rules
from tfx_serving_ext.checks.signature_diff import check_contract, compare_signatures
from tfx_serving_ext.protocol.signatures import Check

__all__ = ["check_contract", "check_serving_rules", "compare_signatures", "format_checks"]


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
