"""Test steps that must run inside the Docker engine's network namespace.

Ports a container publishes on 127.0.0.1 exist only in the engine's namespace, so whatever
talks to them runs here, in a child Python started by `DockerEngine.call_in_netns`:

    python -m tests.containers.in_netns FUNCTION '{"kwarg": ...}' RESULT.json

Each function takes JSON-able keyword arguments and returns a JSON-able result. Request loops
are bounded in count and in time.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any


def docker_canary(
    *,
    candidate_dir: str,
    baseline_dir: str | None,
    examples_b64: list[str],
    output_dir: str,
    image_repository: str,
    image_tag: str,
    num_requests: int = 50,
    max_loading_seconds: int = 180,
) -> dict[str, Any]:
    """Returns the verdict and report of `run_canary` on the docker backend."""
    from tfx.proto import infra_validator_pb2

    from tfx_serving_ext.canary.run import CanaryConfig, run_canary

    spec = infra_validator_pb2.ServingSpec(model_name="penguin", local_docker={})
    spec.tensorflow_serving.image_name = image_repository
    spec.tensorflow_serving.tags.append(image_tag)
    result = run_canary(
        candidate_dir,
        baseline_dir=baseline_dir,
        examples=[base64.b64decode(e) for e in examples_b64],
        output_dir=output_dir,
        config=CanaryConfig(num_requests=num_requests, backend="docker"),
        serving_spec=spec,
        validation_spec=infra_validator_pb2.ValidationSpec(
            max_loading_time_seconds=max_loading_seconds, num_tries=1
        ),
    )
    return {"blessed": result.blessed, "report": result.report}


def docker_backend_readiness(
    *, model_dir: str, image_repository: str, image_tag: str, max_loading_seconds: int = 180
) -> dict[str, Any]:
    """Returns what a gRPC call saw right after `wait_until_running`, and the backend's timings."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc
    from tfx.proto import infra_validator_pb2

    from tfx_serving_ext.canary.backends import CanaryModels
    from tfx_serving_ext.canary.backends.docker import DockerBackend

    spec = infra_validator_pb2.ServingSpec(model_name="penguin", local_docker={})
    spec.tensorflow_serving.image_name = image_repository
    spec.tensorflow_serving.tags.append(image_tag)
    backend = DockerBackend(CanaryModels("penguin", Path(model_dir)), spec)
    began = time.monotonic()
    with backend:
        backend.wait_until_running(time.time() + max_loading_seconds)
        running = time.monotonic() - began
        channel = grpc.insecure_channel(backend.get_endpoint())
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "penguin"
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            stub.GetModelStatus(request, timeout=5)
            first_call = "OK"
        except grpc.RpcError as exc:
            first_call = exc.code().name
        deadline = time.monotonic() + max_loading_seconds
        available = None
        while time.monotonic() < deadline:
            try:
                status = stub.GetModelStatus(request, timeout=5)
                if any(v.state == v.AVAILABLE for v in status.model_version_status):
                    available = time.monotonic() - began
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        channel.close()
        return {
            "running_seconds": running,
            "first_call": first_call,
            "available_seconds": available,
            "timings": backend.timings(),
        }


def rest_predict(
    *, url: str, instances: list, timeout_seconds: float = 120, interval: float = 0.5
) -> dict[str, Any]:
    """Returns the first successful REST predict answer at `url` (retried until the deadline)."""
    import requests

    deadline = time.monotonic() + timeout_seconds
    last = None
    while time.monotonic() < deadline:
        try:
            response = requests.post(url, json={"instances": instances}, timeout=10)
            if response.status_code == 200:
                return {"status": 200, "body": response.json()}
            last = f"HTTP {response.status_code}: {response.text[:500]}"
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(interval)
    return {"status": None, "error": last}


def grpc_model_status(*, address: str, model_name: str, timeout_seconds: float = 60) -> dict:
    """Returns the model's version states over gRPC once the server answers (or the error)."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    deadline = time.monotonic() + timeout_seconds
    last = None
    channel = grpc.insecure_channel(address)
    try:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model_name
        while time.monotonic() < deadline:
            try:
                status = stub.GetModelStatus(request, timeout=5)
                states = {str(v.version): v.state for v in status.model_version_status}
                return {"states": states}
            except grpc.RpcError as exc:
                last = exc.code().name
            time.sleep(0.5)
    finally:
        channel.close()
    return {"error": last}


def run_cli(*, argv: list[str]) -> dict[str, Any]:
    """Returns the exit code and output of `tfx-serving-ext ARGV` run in this namespace."""
    import contextlib
    import io

    from tfx_serving_ext.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-5000:]}


class _TrafficLoop:
    """Predict requests in a loop on a thread, bounded by count and time, until stopped.

    Each request asks for the model with no version (the newest AVAILABLE one); the version
    that answered is counted, so a test sees every hot swap the traffic went through.
    """

    def __init__(self, address: str, model_name: str, example: bytes, *, max_requests: int,
                 max_seconds: float):  # fmt: skip
        import threading

        self.address, self.model_name, self.example = address, model_name, example
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.versions: dict[str, int] = {}
        self.order: list[int] = []  # versions in the order they first answered
        self.latencies_ms: list[float] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _TrafficLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._halt.set()
        self._thread.join(timeout=30)

    def sent(self) -> int:
        return self.ok + len(self.failures)

    def wait_for_answers(self, count: int, timeout: float = 30) -> None:
        """Returns once `count` more requests were answered (or failed), or after `timeout`."""
        target = self.sent() + count
        deadline = time.monotonic() + timeout
        while self.sent() < target and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)

    def _run(self) -> None:
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto([self.example], dtype=tf.string))
        channel = grpc.insecure_channel(self.address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        deadline = time.monotonic() + self.max_seconds
        try:
            while (
                not self._halt.is_set()
                and self.sent() < self.max_requests
                and time.monotonic() < deadline
            ):
                began = time.monotonic()
                try:
                    response = stub.Predict(request, timeout=10)
                except grpc.RpcError as exc:
                    self.failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                self.latencies_ms.append((time.monotonic() - began) * 1000)
                self.ok += 1
                version = int(response.model_spec.version.value)
                self.versions[str(version)] = self.versions.get(str(version), 0) + 1
                if not self.order or self.order[-1] != version:
                    self.order.append(version)
        finally:
            channel.close()


def push_and_rollback_under_traffic(
    *,
    model_dirs: list[str],
    base_directory: str,
    server_address: str,
    model_name: str,
    example_b64: str,
    max_requests: int = 200_000,
    max_seconds: float = 240,
) -> dict[str, Any]:
    """Returns the traffic's counts and each step's result: pushes of `model_dirs` verified on
    the server at `server_address`, then a rollback to the version before the last, all while a
    client loop sends predict requests to the model with no version."""
    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume, rollback_volume

    config = VolumePushConfig(
        base_directory=base_directory,
        model_name=model_name,
        server_address=server_address,
        verify_timeout_seconds=120,
    )
    steps: list[dict[str, Any]] = []
    began = time.monotonic()
    with ServingClient(server_address, timeout=10) as client:
        client.wait_until_available(model_name, timeout=120)
        with _TrafficLoop(
            server_address,
            model_name,
            base64.b64decode(example_b64),
            max_requests=max_requests,
            max_seconds=max_seconds,
        ) as traffic:
            traffic.wait_for_answers(20)
            for model_dir in model_dirs:
                pushed = push_to_volume(model_dir, config)
                steps.append(
                    {
                        "step": "push",
                        "pushed": pushed.pushed,
                        "version": pushed.version,
                        "verification": pushed.verification,
                        "message": pushed.message,
                        "seconds": round(time.monotonic() - began, 2),
                    }
                )
                traffic.wait_for_answers(20)
            rolled = rollback_volume(
                base_directory, model_name=model_name, client=client, timeout=120
            )
            steps.append(
                {
                    "step": "rollback",
                    "version": rolled.current_version,
                    "removed": rolled.removed_versions,
                    "verified": rolled.verified,
                    "seconds": round(time.monotonic() - began, 2),
                }
            )
            traffic.wait_for_answers(20)
        served = sorted(
            s.version for s in client.model_status(model_name) if s.state == "AVAILABLE"
        )
    latencies = sorted(traffic.latencies_ms)
    return {
        "steps": steps,
        "ok": traffic.ok,
        "failures": traffic.failures[:20],
        "failed": len(traffic.failures),
        "versions": traffic.versions,
        "order": traffic.order,
        "available_after": served,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "seconds": round(time.monotonic() - began, 2),
    }


def fleet_push(
    *,
    model_dir: str,
    base_directory: str,
    model_name: str,
    fleet: list[str],
    timeout: float = 120,
    settle_on: int | None = None,
    settle_seconds: float = 30,
) -> dict[str, Any]:
    """Returns the result of a fleet push of `model_dir` (verified on every address in `fleet`,
    once each replica serves a version) and the versions each replica reports AVAILABLE after:
    right after the push, and once each serves only `settle_on` (or `settle_seconds` passed)."""
    import dataclasses

    from tfx_serving_ext.client.client import ServingClient
    from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume

    for address in fleet:
        with ServingClient(address, timeout=10) as client:
            client.wait_until_available(model_name, timeout=timeout)
    config = VolumePushConfig(
        base_directory=base_directory,
        model_name=model_name,
        fleet=fleet,
        verify_timeout_seconds=timeout,
    )
    result = push_to_volume(model_dir, config)

    def available() -> dict[str, list[int]]:
        answers = {}
        for address in fleet:
            with ServingClient(address, timeout=10) as client:
                answers[address] = sorted(
                    s.version for s in client.model_status(model_name) if s.state == "AVAILABLE"
                )
        return answers

    # A replica may still finish a load it began before a rollback removed the version (its
    # next file-system poll unloads it), or not yet have unloaded the version before.
    right_after = settled = available()
    deadline = time.monotonic() + settle_seconds
    while (
        settle_on is not None
        and any(v != [settle_on] for v in settled.values())
        and time.monotonic() < deadline
    ):
        time.sleep(0.5)
        settled = available()
    return {
        "result": dataclasses.asdict(result),
        "available_right_after": right_after,
        "available_settled": settled,
    }


def main(argv: list[str]) -> int:
    """Runs FUNCTION(**json.loads(KWARGS)) and writes its JSON result to RESULT."""
    function_name, kwargs_json, result_path = argv
    function = globals()[function_name]
    result = function(**json.loads(kwargs_json))
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
