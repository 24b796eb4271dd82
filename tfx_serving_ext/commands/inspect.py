"""`tfx-serving-ext inspect`: print a model's signatures, and what changed against another model."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="print a model's serving signatures; with --against, the breaking changes",
        description=(
            "Reads the SavedModel's signatures (without running it), checks them against TF "
            "Serving's rules and, with --against, against another model (what serves now). "
            "Exit code 0: nothing breaking; 1: a check failed (breaking change or a rule TF "
            "Serving enforces); 2: a model cannot be read."
        ),
    )
    parser.add_argument("model_dir", help="SavedModel directory or TFX Model artifact URI")
    parser.add_argument(
        "--against", metavar="OTHER_DIR", help="the baseline model (what clients use now)"
    )
    parser.add_argument(
        "--tag", action="append", dest="tags", help="meta graph tag (repeatable; default serve)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfx_serving_ext.checks.model_validation import validate_model
    from tfx_serving_ext.checks.signature_checks import format_checks
    from tfx_serving_ext.protocol.saved_model import (
        SavedModelError,
        find_serving_model_dir,
        read_signature_defs,
    )
    from tfx_serving_ext.protocol.signatures import format_signatures, summarize_signatures

    tags = args.tags or ["serve"]
    try:
        report = validate_model(args.model_dir, baseline_uri=args.against, tags=tags)
        summaries = summarize_signatures(
            read_signature_defs(find_serving_model_dir(args.model_dir), tags)
        )
    except SavedModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        payload = report.to_dict()
        payload["signatures"] = {
            name: {
                "method": sig.method,
                "inputs": {k: t.describe() for k, t in sig.inputs.items()},
                "outputs": {k: t.describe() for k, t in sig.outputs.items()},
            }
            for name, sig in summaries.items()
        }
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        print(f"{report.model_dir}")
        print(format_signatures(summaries))
        failures = report.failures
        news = format_checks(report.checks, only_news=True)
        if args.against:
            print(f"\nchanges against {report.baseline_dir}:")
            print(news or "  (no changes)")
        elif failures:
            print("\nproblems:")
            print(format_checks(failures))
        print(
            "\nBREAKING: " + f"{len(failures)} check(s) failed"
            if failures
            else "\nno breaking changes"
        )
    return 1 if report.failures else 0
