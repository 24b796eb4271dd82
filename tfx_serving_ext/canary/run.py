"""The serving canary: serve the candidate beside the baseline, drive traffic, judge, report.

Flow (`run_canary`): build the requests from the examples for the chosen signatures; start a
model server on a backend holding the candidate (and the baseline); wait until the candidate is
AVAILABLE within `ValidationSpec.max_loading_time_seconds` (infrastructure failures are retried
up to `num_tries` times; a model that fails to load is not); send the same requests to both,
cycled up to `num_requests` at `concurrency`; stop the server (always: also on failure and on
SIGTERM); compare, judge and write `report.json` + `report.html` (and `server.log` when the
model did not come up).

Example:
    result = run_canary("/models/new", baseline_dir="/models/serving", examples=records,
                        output_dir="/tmp/canary", config=CanaryConfig(num_requests=500))
    result.blessed, result.report["verdict"]["reasons"]
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tfx_serving_ext.canary import backends
from tfx_serving_ext.canary.compare import compare_outputs, plan_comparison
from tfx_serving_ext.canary.config import CanaryConfig, CanaryConfigError
from tfx_serving_ext.canary.judge import CanaryThresholds, Verdict, judge, refuse
from tfx_serving_ext.canary.load_driver import LoadResult, Target, drive_load, latency_summary
from tfx_serving_ext.canary.report import write_report
from tfx_serving_ext.canary.traffic import make_sender, side_requests

__all__ = [
    "CanaryConfig",
    "CanaryConfigError",
    "CanaryInterrupted",
    "CanaryResult",
    "CanaryThresholds",
    "run_canary",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "canary-model"
DEFAULT_MAX_LOADING_TIME_SECONDS = 300
DEFAULT_NUM_TRIES = 5
SERVER_LOG = "server.log"
_LOG_TAIL_CHARS = 6000


class CanaryInterrupted(Exception):
    """SIGTERM arrived during the canary (the server was stopped before this propagated)."""


@dataclass
class CanaryResult:
    """The verdict and the report of one canary run, and where the report was written."""

    blessed: bool
    report: dict[str, Any]
    report_json: Path
    report_html: Path


@contextlib.contextmanager
def terminate_gracefully() -> Iterator[None]:
    """Turns SIGTERM into CanaryInterrupted while inside (main thread only), like InfraValidator."""

    def handler(signum, _frame):
        raise CanaryInterrupted(f"received signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: the platform's own cleanup has to do
        logger.info("SIGTERM is not handled in thread %s", threading.current_thread().name)
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@dataclass
class _Run:
    """What one attempt on a backend measured."""

    backend: str = ""
    endpoint: str | None = None
    candidate_target: str | None = None
    baseline_target: str | None = None
    candidate_version: int | None = None
    load_seconds: float | None = None
    load_error: str | None = None
    baseline_unavailable: str | None = None
    load: LoadResult | None = None
    log: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


def _attempt(backend, requests, plans, replan, config, max_loading: float, run: _Run):
    from tfx_serving_ext.client.client import ServingClient, ServingError

    deadline = time.time() + max_loading
    client = None
    try:
        backend.start()
        backend.wait_until_running(deadline)
        run.endpoint = backend.get_endpoint()
        client = ServingClient(
            run.endpoint, protocol=config.protocol, timeout=config.request_timeout_seconds
        )
        candidate, baseline = backend.targets()
        run.candidate_target = candidate.describe()
        began = time.monotonic()
        run.candidate_version = client.wait_until_available(
            candidate.model_name, candidate.version, timeout=max(0.5, deadline - time.time())
        )
        run.load_seconds = time.monotonic() - began
        if baseline is not None:
            run.baseline_target = baseline.describe()
            try:
                client.wait_until_available(
                    baseline.model_name, baseline.version, timeout=max(0.5, deadline - time.time())
                )
            except ServingError as exc:
                run.baseline_unavailable = str(exc)
            if replan is not None and run.baseline_unavailable is None:
                # No baseline directory (endpoint backend): compare with what the server has.
                replan(client.signature_defs(baseline.model_name, baseline.version))
        if requests:
            send = make_sender(client)
            sides = [Target("candidate", side_requests(requests, candidate), send)]
            if baseline is not None and run.baseline_unavailable is None:
                sides.append(Target("baseline", side_requests(requests, baseline, plans), send))
            if config.unmeasured_requests > 0:
                drive_load(sides, num_requests=config.unmeasured_requests, keep_outputs=False)
            run.load = drive_load(
                sides,
                num_requests=config.num_requests,
                concurrency=config.concurrency,
                max_seconds=config.max_seconds,
            )
    finally:
        run.backend = repr(backend)
        run.log = backend.get_logs()
        if client is not None:
            client.close()
        logger.info("Stopping %r", backend)
        backend.stop()


def _serve_and_measure(
    models, requests, plans, replan, config, serving_spec, validation, work_dir
) -> _Run:
    from tfx_serving_ext.client.client import ServerUnreachable, ServingTimeout, VersionLoadFailed

    name = backends.choose_backend(config.backend, serving_spec)
    max_loading = validation.max_loading_time_seconds or DEFAULT_MAX_LOADING_TIME_SECONDS
    tries = validation.num_tries or DEFAULT_NUM_TRIES
    run = _Run(backend=name)
    for attempt in range(1, tries + 1):
        backend = backends.create_backend(
            name,
            models,
            serving_spec=serving_spec,
            work_dir=Path(work_dir) / f"attempt-{attempt}",
            endpoint_address=config.endpoint_address or None,
            endpoint_base_path=config.endpoint_base_path or None,
            enable_warmup=config.enable_warmup,
        )
        run.backend = repr(backend)
        logger.info("Canary attempt %d/%d on %r", attempt, tries, backend)
        try:
            _attempt(backend, requests, plans, replan, config, max_loading, run)
            run.attempts.append({"attempt": attempt, "error": None})
            return run
        except VersionLoadFailed as exc:
            # The model itself is broken: trying again would only fail again.
            run.load_error = str(exc)
            run.attempts.append({"attempt": attempt, "error": str(exc)})
            return run
        except (ServingTimeout, ServerUnreachable, backends.BackendError) as exc:
            logger.warning("Canary attempt %d/%d failed: %s", attempt, tries, exc)
            run.attempts.append({"attempt": attempt, "error": f"{type(exc).__name__}: {exc}"})
    run.load_error = (
        f"the candidate was not AVAILABLE after {tries} attempt(s) of "
        f"{max_loading} s each; last: {run.attempts[-1]['error']}"
    )
    return run


def _error_summary(load: LoadResult, side: str) -> dict[str, Any]:
    records = load.for_target(side)
    by_message: dict[str, int] = {}
    for record in records:
        if record.error:
            by_message[record.error] = by_message.get(record.error, 0) + 1
    count = sum(by_message.values())
    return {
        "total": len(records),
        "count": count,
        "rate": count / len(records) if records else None,
        "by_message": by_message,
    }


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
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
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

    run = _Run()
    if verdict is None:
        models = backends.CanaryModels(model_name, candidate, baseline)
        with contextlib.ExitStack() as stack:
            if work_dir is None:
                work_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="canary-"))
            with terminate_gracefully():
                run = _serve_and_measure(
                    models,
                    requests,
                    plans,
                    replan if requests and baseline is None else None,
                    config,
                    serving_spec,
                    validation,
                    work_dir,
                )
        for plan in plans.values():
            if not plan.compared and plan.reason != "no baseline":
                notes.append(
                    f"signature '{plan.name}' not compared with the baseline: {plan.reason}"
                )
        verdict = _judge(run, config, plans, report, notes)
    compared = baseline is not None or run.baseline_target is not None
    report["mode"] = "load_only" if not requests else ("compare" if compared else "query")
    report["verdict"] = verdict.to_json()
    report["backend"] = {"description": run.backend, "endpoint": run.endpoint}
    report["attempts"] = run.attempts
    report["candidate"].update(
        target=run.candidate_target,
        version=run.candidate_version,
        load_seconds=run.load_seconds,
        load_error=run.load_error,
    )
    if report["baseline"] is None and run.baseline_target is not None:
        report["baseline"] = {"model_dir": None}
    if report["baseline"] is not None:
        report["baseline"].update(target=run.baseline_target, unavailable=run.baseline_unavailable)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if run.load_error and run.log:
        (output / SERVER_LOG).write_text(run.log)
        report["server_log"] = SERVER_LOG
        report["server_log_tail"] = run.log[-_LOG_TAIL_CHARS:]
    json_path, html_path = write_report(output, report)
    logger.info(
        "Canary verdict: %s%s",
        "BLESSED" if verdict.blessed else "NOT BLESSED",
        "" if verdict.blessed else " (" + "; ".join(verdict.reasons) + ")",
    )
    return CanaryResult(verdict.blessed, report, json_path, html_path)


def _judge(run: _Run, config: CanaryConfig, plans, report: dict, notes: list[str]) -> Verdict:
    if run.load_error:
        return refuse(f"the candidate did not load: {run.load_error}", notes=notes)
    if run.baseline_unavailable:
        # As for a baseline that answers nothing: no threshold passes on a comparison not made.
        if config.thresholds.compares_with_baseline:
            return refuse(
                f"the baseline (what serves now) did not become available in the canary's server "
                f"({run.baseline_unavailable}), so the candidate could not be compared with it; "
                "to judge on absolute thresholds alone, set max_p50_ratio, max_p99_ratio, "
                "min_top_class_agreement and max_mean_abs_diff to null",
                notes=notes,
            )
        notes.append(
            f"the baseline was not available ({run.baseline_unavailable}); only absolute "
            "thresholds were applied"
        )
    load = run.load
    if load is None:
        return judge(
            config.thresholds,
            candidate_latency=None,
            baseline_latency=None,
            candidate_error_rate=None,
            notes=notes,
        )
    if load.stopped_early:
        notes.append(load.stopped_early)
    if not load.for_target("candidate"):
        return refuse(
            "no request reached the candidate: nothing about it was measured"
            + (f" ({load.stopped_early})" if load.stopped_early else ""),
            notes=notes,
        )
    sides = ["candidate"] + (["baseline"] if load.for_target("baseline") else [])
    report["latency_ms"] = {side: latency_summary(load.latencies_ms(side)) for side in sides}
    report["errors"] = {side: _error_summary(load, side) for side in sides}
    report["traffic"] = {
        "requests_planned": load.requests_planned,
        "requests_issued": load.requests_issued,
        "sends": len(load.records),
        "wall_seconds": round(load.wall_seconds, 3),
        "sends_per_second": round(load.requests_per_second(), 1),
        "concurrency": config.concurrency,
        "stopped_early": load.stopped_early,
    }
    agreements = []
    if "baseline" in sides:
        agreements = compare_outputs(
            load.for_target("candidate"), load.for_target("baseline"), plans
        )
    report["comparison"] = {
        "signatures": [asdict(p) for p in plans.values()],
        "agreements": [a.to_json() for a in agreements],
    }
    report["requests"] = [r.to_json() for r in load.records]
    return judge(
        config.thresholds,
        candidate_latency=report["latency_ms"]["candidate"],
        baseline_latency=report["latency_ms"].get("baseline"),
        candidate_error_rate=report["errors"]["candidate"]["rate"],
        baseline_error_rate=(report["errors"].get("baseline") or {}).get("rate"),
        agreements=agreements,
        notes=notes,
    )
