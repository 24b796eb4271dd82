"""The TF Serving image the live tests run honours tensorflow/serving's contract.

The same test runs against a real `tensorflow/serving` (TF_SERVING_IMAGE=...): MODEL_NAME and
MODEL_BASE_PATH choose the model, gRPC is on 8500 and REST on 8501 on all interfaces, extra
arguments reach the server, and SIGTERM stops it at once (the entrypoint execs).
"""

from __future__ import annotations

import base64
import time

import docker.types

from tests.containers.fixtures import leftovers


def test_image_serves_the_model_named_by_the_environment(
    docker_engine, tf_serving_image, penguin_model_dir, penguin_examples
):
    examples = [base64.b64encode(e.SerializeToString()).decode() for e in penguin_examples[:2]]
    client = docker_engine.client()
    container = client.containers.run(
        tf_serving_image.reference,
        ["--file_system_poll_wait_seconds=2"],
        environment={"MODEL_NAME": "penguin"},
        mounts=[
            docker.types.Mount(
                "/models/penguin/1", str(penguin_model_dir), type="bind", read_only=True
            )
        ],
        ports={"8500/tcp": ("127.0.0.1", None), "8501/tcp": ("127.0.0.1", None)},
        detach=True,
    )
    try:
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        rest_port = container.ports["8501/tcp"][0]["HostPort"]
        # REST through the published port, gRPC straight to the container's address: both
        # inside the engine's namespace.
        status = docker_engine.call_in_netns(
            "grpc_model_status",
            address=f"{ip}:8500",
            model_name="penguin",
            timeout_seconds=180,
            timeout=240,
        )
        assert status.get("states"), status
        answer = docker_engine.call_in_netns(
            "rest_predict",
            url=f"http://127.0.0.1:{rest_port}/v1/models/penguin/versions/1:predict",
            instances=[{"b64": example} for example in examples],
            timeout_seconds=60,
            timeout=120,
        )
        assert answer["status"] == 200, answer
        assert len(answer["body"]["predictions"]) == 2
        began = time.monotonic()
        container.stop(timeout=30)
        stopped_in = time.monotonic() - began
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs()[-2000:]
        assert stopped_in < 15, f"SIGTERM took {stopped_in:.1f} s: it did not reach the server"
    finally:
        container.remove(force=True)
        client.close()
    assert leftovers(docker_engine)["containers"] == []
