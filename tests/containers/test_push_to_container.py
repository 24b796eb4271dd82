"""Pushing to TF Serving in a container: versions 1 -> 2 -> 3 and a rollback under traffic.

TF Serving (the stand-in image, or TF_SERVING_IMAGE) runs in the private engine with the serving
volume bind-mounted as its model base path. Version 1 is the first push onto an empty volume
(TF Serving opens its ports only once a version loads, so there is no server to verify it on
yet); versions 2 and 3 are pushed with `push_to_volume` verifying on the container's gRPC port,
and `rollback_volume` goes back to 2 and waits until the container serves it, while a client
loop in the engine's namespace sends predict requests without a version the whole time. Not one
request may fail, and every version must have answered some of them.
"""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import docker.types

from tests.containers.fixtures import leftovers
from tfx_serving_ext.publish.push import VolumePushConfig, push_to_volume

MODEL = "penguin"
CONTAINER_BASE = f"/models/{MODEL}"


@contextlib.contextmanager
def serving_container(engine, image, volume: Path):
    """Yields (container, its gRPC address in the engine's namespace); removes it on exit."""
    client = engine.client()
    container = client.containers.run(
        image.reference,
        # TF Serving's flag takes whole seconds; 1 keeps each swap short.
        ["--file_system_poll_wait_seconds=1"],
        environment={"MODEL_NAME": MODEL},
        mounts=[docker.types.Mount(CONTAINER_BASE, str(volume), type="bind", read_only=True)],
        ports={"8500/tcp": ("127.0.0.1", None)},
        detach=True,
    )
    try:
        container.reload()
        yield container, f"127.0.0.1:{container.ports['8500/tcp'][0]['HostPort']}"
    finally:
        container.remove(force=True)
        client.close()


def test_pushes_and_a_rollback_under_traffic_fail_no_request(
    docker_engine, tf_serving_image, penguin_model_dir, penguin_examples, tmp_path
):
    volume = tmp_path / "serving" / MODEL
    first = push_to_volume(penguin_model_dir, VolumePushConfig(str(volume), model_name=MODEL))
    assert (first.pushed, first.version) == (True, 1), first
    with serving_container(docker_engine, tf_serving_image, volume) as (container, address):
        seen = docker_engine.call_in_netns(
            "push_and_rollback_under_traffic",
            model_dirs=[str(penguin_model_dir), str(penguin_model_dir)],
            base_directory=str(volume),
            server_address=address,
            model_name=MODEL,
            example_b64=base64.b64encode(penguin_examples[0].SerializeToString()).decode(),
            timeout=420,
        )
        log = container.logs()[-3000:].decode(errors="replace")
    pushes = [s for s in seen["steps"] if s["step"] == "push"]
    # The pusher verified each version on the container's server.
    assert [(s["version"], s["verification"]) for s in pushes] == [
        (2, "available"),
        (3, "available"),
    ], (seen["steps"], log)
    assert all(address in s["message"] for s in pushes), pushes
    rollback = seen["steps"][-1]
    assert (rollback["version"], rollback["removed"], rollback["verified"]) == (2, [3], True)
    assert seen["failed"] == 0, (seen["failures"], log)
    # Traffic went through every swap: 1, then 2, then 3, then back to 2.
    assert seen["order"] == [1, 2, 3, 2], seen
    assert seen["available_after"] == [2], seen
    assert sorted(int(p.name) for p in volume.iterdir() if p.name.isdigit()) == [1, 2]
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}
