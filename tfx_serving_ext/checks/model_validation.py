"""Returns a validation report for a candidate model: TF Serving's rules, a contract, the
baseline diff and, given examples, one in-process batch per signature.

This is the SignatureValidator's library function; the executor only resolves artifacts and
writes the blessing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tensorflow.core.framework import types_pb2

from tfx_serving_ext.checks.model_runner import LocalModel, RequestFailed
from tfx_serving_ext.checks.requests import (
    CannotBuildRequest,
    RequestForSignature,
    build_signature_requests,
)
from tfx_serving_ext.checks.signature_checks import (
    check_contract,
    check_serving_rules,
    compare_signatures,
)
from tfx_serving_ext.protocol.saved_model import (
    SERVE_TAG,
    SavedModelError,
    find_serving_model_dir,
    read_saved_model,
    read_signature_defs,
)
from tfx_serving_ext.protocol.signatures import (
    BreakingChangePolicy,
    Check,
    ServingContract,
    SignatureSummary,
    shapes_compatible,
    summarize_signatures,
)

logger = logging.getLogger(__name__)


@dataclass
class ValidationReport:
    """Every check with its outcome; the model is blessed when all passed."""

    model_dir: str
    baseline_dir: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def blessed(self) -> bool:
        """Returns True when no check failed."""
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        """Returns the checks that failed."""
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        """Returns the report as a JSON-friendly dict (the `report.json` content)."""
        return {
            "blessed": self.blessed,
            "model_dir": self.model_dir,
            "baseline_dir": self.baseline_dir,
            "checks": [check.to_dict() for check in self.checks],
        }

    def to_json(self) -> str:
        """Returns the report as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _read_summaries(model_dir, tags: list[str]) -> dict[str, SignatureSummary]:
    return summarize_signatures(read_signature_defs(model_dir, tags))


def validate_model(
    model_uri: str | os.PathLike,
    *,
    baseline_uri: str | os.PathLike | None = None,
    examples: Sequence[bytes] | None = None,
    contract: ServingContract | None = None,
    policy: BreakingChangePolicy | None = None,
    tags: Iterable[str] = (SERVE_TAG,),
) -> ValidationReport:
    """Returns the report of every check on the model under `model_uri`.

    Args:
        model_uri: Model artifact URI (TFX Trainer layout) or a SavedModel directory.
        baseline_uri: the model serving now, to diff against; None skips the diff.
        examples: a few serialized tf.Examples; each signature is run once on them as a batch.
        contract: the interface clients expect; only what it states is checked.
        policy: what counts as breaking.
        tags: the tag set TF Serving loads.

    Raises:
        SavedModelError: the model (or the baseline) has no readable SavedModel.
    """
    tags = list(tags)
    policy = policy or BreakingChangePolicy()
    model_dir = find_serving_model_dir(model_uri)
    read_saved_model(model_dir)  # an unreadable model is an error, not a refusal
    report = ValidationReport(model_dir=str(model_dir))
    try:
        defs = read_signature_defs(model_dir, tags)
    except SavedModelError as exc:
        report.checks.append(Check("tag_set_exists", False, str(exc)))
        return report
    report.checks.append(Check("tag_set_exists", True, f"meta graph with tags {sorted(tags)}"))
    candidate = summarize_signatures(defs)
    report.checks.extend(check_serving_rules(candidate, policy))
    if contract is not None and contract.signatures:
        report.checks.extend(check_contract(candidate, contract))
    if baseline_uri is not None:
        baseline_dir = find_serving_model_dir(baseline_uri)
        report.baseline_dir = str(baseline_dir)
        report.checks.extend(
            compare_signatures(_read_summaries(baseline_dir, tags), candidate, policy)
        )
    if examples:
        report.checks.extend(run_signatures_on_examples(model_dir, defs, examples, tags))
    logger.info(
        "Validated %s: %d checks, %d failed", model_dir, len(report.checks), len(report.failures)
    )
    return report


def run_signatures_on_examples(model_dir, signature_defs, examples, tags) -> list[Check]:
    """Returns one check per signature: it answers one batch in-process with declared outputs."""
    summaries = summarize_signatures(signature_defs)
    checks = []
    model = None
    for name, signature_def in sorted(signature_defs.items()):
        try:
            (request,) = build_signature_requests(
                name, signature_def, examples, "validation", batch_size=len(examples)
            )
        except CannotBuildRequest as exc:
            checks.append(Check("runs_on_examples", True, f"not run: {exc}", name))
            continue
        if model is None:
            model = LocalModel(model_dir, tags)
        checks.append(check_request_answers(model, request, summaries[name]))
    return checks


def check_request_answers(
    model: LocalModel, request: RequestForSignature, summary: SignatureSummary
) -> Check:
    """Returns whether the model answers `request` as TF Serving would, with declared outputs.

    The request runs through the same runner as the embedded server's (TF Serving's checks and
    the same meaning of a request); the outputs are then compared with what the signature
    declares (dtype, compatible shape).
    """
    name = request.signature_name
    try:
        outputs = model.run(request)
    except RequestFailed as exc:
        return Check("runs_on_examples", False, str(exc), name)
    problems = []
    for key, tensor in outputs.items():
        declared = summary.outputs.get(key)
        if declared is None:
            continue
        dtype = types_pb2.DataType.Name(tensor.dtype.as_datatype_enum)
        if dtype != declared.dtype:
            problems.append(f"output '{key}' is {dtype}, declared {declared.dtype}")
        if not shapes_compatible(declared.shape, tuple(tensor.shape)):
            problems.append(
                f"output '{key}' has shape {list(tensor.shape)}, declared "
                f"{list(declared.shape or [])}"
            )
    batch = _batch_size(request)
    return Check(
        "runs_on_examples",
        not problems,
        "; ".join(problems) or f"answered a batch of {batch} examples with the declared outputs",
        name,
    )


def _batch_size(request: RequestForSignature) -> int:
    if request.kind != "predict":
        model_input = request.request.input
        if model_input.WhichOneof("kind") == "example_list_with_context":
            return len(model_input.example_list_with_context.examples)
        return len(model_input.example_list.examples)
    first = next(iter(request.request.inputs.values()), None)
    return first.tensor_shape.dim[0].size if first is not None and first.tensor_shape.dim else 1
