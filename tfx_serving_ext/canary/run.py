"""The serving canary: serve the candidate beside the baseline, drive traffic, judge, report.

Flow (`run_canary`): build the requests from the examples for the chosen signatures; start a
model server on a backend holding the candidate (and the baseline); wait until the candidate is
AVAILABLE within `ValidationSpec.max_loading_time_seconds` (infrastructure failures are retried
up to `num_tries` times; a model that fails to load is not); send the same requests to both,
cycled up to `num_requests` at `concurrency`; stop the server (always: also on failure and on
SIGTERM); compare, judge and write `report.json` + `report.html` (and `server.log` when the
model did not come up).

The serving and measuring live in `measure`, the judging of what was measured in `assessment`;
this module prepares the requests and the comparison, and writes the report.

Example:
    result = run_canary("/models/new", baseline_dir="/models/serving", examples=records,
                        output_dir="/tmp/canary", config=CanaryConfig(num_requests=500))
    result.blessed, result.report["verdict"]["reasons"]
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx_serving_ext.canary import backends
from tfx_serving_ext.canary.assessment import judge_measurement, record_measurement
from tfx_serving_ext.canary.compare import plan_comparison
from tfx_serving_ext.canary.config import CanaryConfig, CanaryConfigError
from tfx_serving_ext.canary.judge import CanaryThresholds, Verdict, refuse
from tfx_serving_ext.canary.measure import (
    CanaryInterrupted,
    Measurement,
    serve_and_measure,
    terminate_gracefully,
)
from tfx_serving_ext.canary.report import write_report
from tfx_serving_ext.canary.server_identity import describe_server, tf_serving_required_reason

__all__ = [
    "CanaryConfig",
    "CanaryConfigError",
    "CanaryInterrupted",
    "CanaryResult",
    "CanaryThresholds",
    "run_canary",
    "terminate_gracefully",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "canary-model"
SERVER_LOG = "server.log"
_LOG_TAIL_CHARS = 6000


@dataclass
class CanaryResult:
    """The verdict and the report of one canary run, and where the report was written."""

    blessed: bool
    report: dict[str, Any]
    report_json: Path
    report_html: Path
    # The SavedModel directory that was served and the requests sent to it (make_warmup).
    candidate_dir: Path | None = None
    requests: list = field(default_factory=list)


def run_canary(
    candidate_dir: str | Path,
    *,
    output_dir: str | Path,
    baseline_dir: str | Path | None = None,
    examples: Sequence[bytes] | None = None,
    config: CanaryConfig | None = None,
    serving_spec=None,
    validation_spec=None,
    request_spec=None,
    work_dir: str | Path | None = None,
) -> CanaryResult:
    """Returns the verdict after serving, loading and comparing the candidate; writes the report.

    Args:
        candidate_dir: a Model artifact URI or SavedModel directory (the candidate).
        output_dir: where report.json, report.html (and server.log) are written.
        baseline_dir: what serves now (Model/PushedModel URI or SavedModel dir); None on a
            first deployment (then only absolute thresholds apply).
        examples: serialized tf.Examples for the traffic; None or empty: load-only.
        config: traffic, backend and thresholds.
        serving_spec: infra_validator_pb2.ServingSpec (model name, image, platform).
        validation_spec: infra_validator_pb2.ValidationSpec (loading deadline, tries).
        request_spec: infra_validator_pb2.RequestSpec (signatures, tag set, split, examples).
        work_dir: scratch space for the server's files (default: a temporary directory).

    Raises:
        CanaryInterrupted: SIGTERM arrived (the server has been stopped).
        SavedModelError: no SavedModel under `candidate_dir` or `baseline_dir`.
    """
    from tfx.proto import infra_validator_pb2

    from tfx_serving_ext.checks.requests import build_requests
    from tfx_serving_ext.protocol.saved_model import (
        SavedModelError,
        find_serving_model_dir,
        read_signature_defs,
    )

    config = config or CanaryConfig()
    serving_spec = serving_spec or infra_validator_pb2.ServingSpec()
    validation = validation_spec or infra_validator_pb2.ValidationSpec()
    request_spec = request_spec or infra_validator_pb2.RequestSpec()
    model_name = serving_spec.model_name or DEFAULT_MODEL_NAME
    candidate = find_serving_model_dir(candidate_dir)
    baseline = find_serving_model_dir(baseline_dir) if baseline_dir else None
    tags = list(request_spec.tensorflow_serving.tag_set) or ["serve"]
    names = list(request_spec.tensorflow_serving.signature_names) or ["serving_default"]
    num_examples = request_spec.num_examples or config.num_examples
    notes: list[str] = []
    report: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "candidate": {"model_dir": str(candidate)},
        "baseline": {"model_dir": str(baseline)} if baseline else None,
    }
    verdict: Verdict | None = None
    requests, plans, skipped, served = [], {}, {}, []
    try:
        candidate_sigs = read_signature_defs(candidate, tags)
    except SavedModelError as exc:
        candidate_sigs = None
        notes.append(f"the candidate's signatures cannot be read ({exc}); no traffic was sent")
    baseline_sigs = None
    if baseline is not None:
        try:
            baseline_sigs = read_signature_defs(baseline, tags)
        except SavedModelError as exc:
            notes.append(f"the baseline's signatures cannot be read ({exc}); no comparison")
    if candidate_sigs is not None and examples:
        missing = [n for n in names if n not in candidate_sigs]
        if missing:
            verdict = refuse(
                f"the candidate has no signature {missing} (it has {sorted(candidate_sigs)}); "
                "RequestSpec.tensorflow_serving.signature_names asks for it"
            )
        else:
            requests = build_requests(
                candidate_sigs,
                list(examples)[:num_examples],
                model_name,
                names,
                batch_size=config.batch_size,
                skipped=skipped,
            )
            served = sorted({r.signature_name for r in requests})
            plans = plan_comparison(candidate_sigs, baseline_sigs, served)
    elif not examples:
        notes.append("no examples: load-only validation (the model loaded; no traffic was sent)")
    for name, reason in skipped.items():
        notes.append(f"signature '{name}' got no traffic: {reason}")
    if examples and not requests and verdict is None and candidate_sigs is not None:
        notes.append("no request could be built from the examples: load-only validation")

    def replan(served_baseline_signatures) -> None:
        plans.clear()
        plans.update(plan_comparison(candidate_sigs, served_baseline_signatures, served))

    run = Measurement()
    if verdict is None:
        models = backends.CanaryModels(model_name, candidate, baseline)
        with contextlib.ExitStack() as stack:
            if work_dir is None:
                work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="canary-"))
            run, verdict = _serve_every_image(
                models,
                requests,
                plans,
                replan if requests and baseline is None else None,
                config,
                serving_spec,
                validation,
                Path(work_dir),
                report,
                notes,
            )
    report["server"] = _server_identity(run, serving_spec, config)
    if config.require_tf_serving and report["server"] and not report["server"]["tf_serving"]:
        verdict.blessed = False
        verdict.reasons.insert(0, tf_serving_required_reason(report["server"]))
    compared = baseline is not None or run.baseline_target is not None
    report["mode"] = "load_only" if not requests else ("compare" if compared else "query")
    record_measurement(report, run, verdict)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if run.load_error and run.log:
        (output / SERVER_LOG).write_text(run.log)
        report["server_log"] = SERVER_LOG
        report["server_log_tail"] = run.log[-_LOG_TAIL_CHARS:]
    json_path, html_path = write_report(output, report)
    logger.info(
        "Canary verdict: %s on %s%s",
        "BLESSED" if verdict.blessed else "NOT BLESSED",
        (report["server"] or {}).get("description", "no server"),
        "" if verdict.blessed else " (" + "; ".join(verdict.reasons) + ")",
    )
    return CanaryResult(verdict.blessed, report, json_path, html_path, candidate, requests)


def _serve_every_image(
    models, requests, plans, replan, config, serving_spec, validation, work_dir, report, notes
) -> tuple[Measurement, Verdict]:
    """Returns the measurement and verdict that decide, after serving on every image.

    As InfraValidator, a backend that runs an image runs each of the ServingSpec's tags and
    digests in turn and blesses only when every one passes; the first refusal ends the run (its
    measurement is the report's). With more than one image, `report["images"]` lists each
    one's identity and verdict, and a refusal's reasons name the image.
    """
    name = backends.choose_backend(config.backend, serving_spec)
    binaries = backends.serving_binaries_for(name, serving_spec)
    images: list[dict[str, Any]] = []
    for index, binary in enumerate(binaries):
        with terminate_gracefully():
            run = serve_and_measure(
                models,
                requests,
                plans,
                replan,
                config,
                serving_spec,
                validation,
                work_dir / f"image-{index}",
                backend_name=name,
                serving_binary=binary,
            )
        image_notes = list(notes)
        for plan in plans.values():
            if not plan.compared and plan.reason != "no baseline":
                image_notes.append(
                    f"signature '{plan.name}' not compared with the baseline: {plan.reason}"
                )
        verdict = judge_measurement(run, config, plans, report, image_notes)
        if binary is not None:
            identity = _server_identity(run, serving_spec, config) or {}
            images.append(
                {
                    "image": identity.get("image"),
                    "image_digest": identity.get("image_digest"),
                    "image_id": identity.get("image_id"),
                    "blessed": verdict.blessed,
                    "reasons": list(verdict.reasons),
                }
            )
        if not verdict.blessed:
            break
    if len(binaries) > 1:
        report["images"] = images
        untried = [b.image for b in binaries[len(images) :]]
        if not verdict.blessed:
            verdict.reasons = [f"on {images[-1]['image']}: {r}" for r in verdict.reasons]
            if untried:
                verdict.notes.append(f"not run after that refusal: {', '.join(untried)}")
    return run, verdict


def _server_identity(run: Measurement, serving_spec, config: CanaryConfig) -> dict | None:
    """Returns who served the canary (None when nothing was served)."""
    if not run.backend_name:
        return None
    try:
        return describe_server(
            run.backend_name,
            serving_spec,
            endpoint_address=config.endpoint_address,
            facts=run.server_facts,
        )
    except backends.BackendError as exc:
        return {"kind": run.backend_name, "tf_serving": False, "description": str(exc)}
