"""The Cloud Run image for real: built onto the TF Serving image, pushed, pulled and run.

`tfx-serving-ext cloud-run build` assembles the image without a daemon onto the TF Serving image
(the stand-in, or TF_SERVING_IMAGE) in a docker-registry inside the engine's namespace; skopeo
reads it back, the engine pulls it by digest and runs it the way Cloud Run does (`PORT` set),
and a REST predict is answered on that port.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from tests.containers.fixtures import leftovers

MODEL = "penguin"


@pytest.fixture(scope="module")
def base_in_registry(docker_engine, tf_serving_image, netns_registry) -> str:
    """Returns the TF Serving image's reference in the namespace's registry (pushed once)."""
    client = docker_engine.client()
    repository = f"{netns_registry.host}/{tf_serving_image.repository}"
    try:
        client.images.get(tf_serving_image.reference).tag(repository, tf_serving_image.tag)
        for line in client.images.push(repository, tf_serving_image.tag, stream=True, decode=True):
            assert "error" not in line, line
        client.images.remove(f"{repository}:{tf_serving_image.tag}")
    finally:
        client.close()
    return f"{repository}:{tf_serving_image.tag}"


@pytest.fixture(scope="module")
def model_image(docker_engine, netns_registry, base_in_registry, penguin_model_dir) -> str:
    """Returns `repository@sha256:...` of the penguin's Cloud Run image, built by the CLI."""
    repository = f"{netns_registry.host}/models/penguin-{uuid.uuid4().hex[:8]}"
    built = docker_engine.call_in_netns(
        "run_cli",
        argv=[
            "cloud-run",
            "build",
            str(penguin_model_dir),
            "--image-repository",
            repository,
            "--base-image",
            base_in_registry,
            "--model-name",
            MODEL,
            "--model-version",
            "1",
        ],
        timeout=600,
    )
    assert built["code"] == 0, built["stderr"]
    image = json.loads(built["stdout"])["image"]
    assert image.startswith(f"{repository}@sha256:")
    return image


def test_skopeo_reads_the_image_the_cli_pushed(docker_engine, model_image):
    inspect = docker_engine.run_in_netns(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{model_image}"], timeout=120
    )
    manifest = json.loads(inspect.stdout)
    assert (manifest["Os"], manifest["Architecture"]) == ("linux", "amd64")
    assert manifest["Digest"] == model_image.split("@", 1)[1]
    assert any(key.startswith("dev.tfx-serving-ext") for key in manifest["Labels"]), manifest
    config = json.loads(
        docker_engine.run_in_netns(
            ["skopeo", "inspect", "--config", "--tls-verify=false", f"docker://{model_image}"],
            timeout=120,
        ).stdout
    )
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/tfx-serving-ext-entrypoint.sh"]
    assert f"MODEL_NAME={MODEL}" in config["config"]["Env"]
    user = config["config"].get("User", "")
    assert user and user.split(":")[0] not in ("0", "root"), f"image runs as root: {config}"
    # No host path of the build machine leaks into the image's metadata.
    assert not any("/tmp/" in value or "/work/" in value for value in manifest["Labels"].values())


def test_the_image_runs_as_a_non_root_user(docker_engine, model_image):
    """What the running container is, not what the config says: `id` inside the pulled image."""
    client = docker_engine.client()
    try:
        client.images.pull(model_image)
        output = client.containers.run(
            model_image, entrypoint=["id", "-u"], remove=True, stdout=True, stderr=True
        )
    finally:
        client.close()
    assert output.decode().strip() not in ("", "0"), output


@pytest.mark.parametrize("port", [8080, 8500])
def test_pulled_by_digest_the_image_answers_rest_predict_on_port(
    docker_engine, model_image, penguin_examples, port
):
    """PORT=8500 too: gRPC's default port must move off $PORT instead of colliding."""
    client = docker_engine.client()
    try:
        image = client.images.pull(model_image)
        assert model_image.split("@", 1)[1] in image.attrs["RepoDigests"][0]
        container = client.containers.run(
            model_image,
            environment={"PORT": str(port)},
            ports={f"{port}/tcp": ("127.0.0.1", None)},
            detach=True,
        )
        try:
            container.reload()
            host_port = container.ports[f"{port}/tcp"][0]["HostPort"]
            examples = [
                base64.b64encode(e.SerializeToString()).decode() for e in penguin_examples[:3]
            ]
            answer = docker_engine.call_in_netns(
                "rest_predict",
                url=f"http://127.0.0.1:{host_port}/v1/models/{MODEL}:predict",
                instances=[{"b64": e} for e in examples],
                timeout_seconds=180,
                timeout=240,
            )
            container.reload()
            assert answer["status"] == 200, (answer, container.logs()[-3000:])
            assert len(answer["body"]["predictions"]) == 3
        finally:
            container.remove(force=True)
    finally:
        client.close()
    assert leftovers(docker_engine)["containers"] == []


def test_a_bad_port_fails_fast_with_a_clear_message(docker_engine, model_image):
    client = docker_engine.client()
    try:
        container = client.containers.run(model_image, environment={"PORT": "80a"}, detach=True)
        try:
            result = container.wait(timeout=30)
            logs = container.logs().decode()
        finally:
            container.remove(force=True)
    finally:
        client.close()
    assert result["StatusCode"] == 64, logs
    assert "port '80a' is not a number" in logs
