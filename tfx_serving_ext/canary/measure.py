"""Serving the candidate (and the baseline) on a backend and measuring them: `serve_and_measure`.

One attempt starts the backend, waits until the candidate (and the baseline) are AVAILABLE
within the loading deadline, sends the unmeasured then the measured requests to both sides, and
always stops the server (also on failure, and on SIGTERM through `terminate_gracefully`).
Infrastructure failures are retried up to `num_tries` times; a model that fails to load is not.
What was measured comes back as a `Measurement` for `assessment` to judge.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfx_serving_ext.canary import backends
from tfx_serving_ext.canary.config import CanaryConfig
from tfx_serving_ext.canary.load_driver import LoadResult, Target, drive_load
from tfx_serving_ext.canary.traffic import make_sender, side_requests

logger = logging.getLogger(__name__)

DEFAULT_MAX_LOADING_TIME_SECONDS = 300
DEFAULT_NUM_TRIES = 5


class CanaryInterrupted(Exception):
    """SIGTERM arrived during the canary (the server was stopped before this propagated)."""


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
class Measurement:
    """What the attempts on a backend measured: where, how the models loaded, the traffic."""

    backend: str = ""
    backend_name: str = ""  # the concrete backend: embedded, docker, kubernetes, endpoint
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
    # Start-up durations the backend measured (docker: container start vs server answering).
    timings: dict[str, float] = field(default_factory=dict)
    # What the backend knows of the server it ran (`ModelServerBackend.identity`).
    server_facts: dict[str, Any] = field(default_factory=dict)


def _attempt(
    backend, requests, plans, replan, config: CanaryConfig, max_loading: float, run: Measurement
) -> None:
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
        run.timings = backend.timings()
        run.server_facts = backend.identity()
        run.log = backend.get_logs()
        if client is not None:
            client.close()
        logger.info("Stopping %r", backend)
        backend.stop()


def serve_and_measure(
    models: backends.CanaryModels,
    requests: list,
    plans: dict[str, Any],
    replan,
    config: CanaryConfig,
    serving_spec,
    validation,
    work_dir: str | Path,
    *,
    backend_name: str | None = None,
    serving_binary=None,
) -> Measurement:
    """Returns what was measured serving `models` on the configured backend, retrying failures.

    Args:
        models: the model name, candidate and baseline directories.
        requests: the requests to send to both sides (empty: load-only).
        plans: the comparison plan per signature; `replan` may rewrite it.
        replan: called with the signatures the server reports for the baseline when there is
            no baseline directory (endpoint backend); None otherwise.
        config: the CanaryConfig (backend, protocol, traffic).
        serving_spec: infra_validator_pb2.ServingSpec.
        validation: infra_validator_pb2.ValidationSpec (loading deadline, tries).
        work_dir: scratch space; each attempt gets its own subdirectory.
        backend_name: the concrete backend (default: `choose_backend` on the config's).
        serving_binary: the image to run (`backends.serving_binaries_for`; docker, kubernetes).
    """
    from tfx_serving_ext.client.client import ServerUnreachable, ServingTimeout, VersionLoadFailed

    name = backend_name or backends.choose_backend(config.backend, serving_spec)
    max_loading = validation.max_loading_time_seconds or DEFAULT_MAX_LOADING_TIME_SECONDS
    tries = validation.num_tries or DEFAULT_NUM_TRIES
    run = Measurement(backend=name, backend_name=name)
    for attempt in range(1, tries + 1):
        backend = backends.create_backend(
            name,
            models,
            serving_spec=serving_spec,
            work_dir=Path(work_dir) / f"attempt-{attempt}",
            endpoint_address=config.endpoint_address or None,
            endpoint_base_path=config.endpoint_base_path or None,
            endpoint_model_config_file=config.endpoint_model_config_file or None,
            endpoint_server_base_path=config.endpoint_server_base_path or None,
            endpoint_server_version=config.endpoint_server_version or None,
            serving_binary=serving_binary,
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
