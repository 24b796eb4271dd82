"""Docker and Kubernetes backends as data, and the Docker backend live.

The live tests run a real Docker engine (dockerd in a network namespace of the test session's
own, `tests/containers/engine.py`) and the TF Serving image (the stand-in built from Debian's
packages and this project's server, or a real `tensorflow/serving` with TF_SERVING_IMAGE). The
canary runs inside the engine's namespace, where the container's published port is.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from kubernetes import client as k8s
from tfx.proto import infra_validator_pb2

from tests.containers.fixtures import leftovers
from tfx_serving_ext.canary.backends import (
    BackendError,
    CanaryModels,
    choose_backend,
    serving_binaries_for,
)
from tfx_serving_ext.canary.backends.docker import (
    build_container_spec,
    container_config_text,
    serving_image,
)
from tfx_serving_ext.canary.backends.kubernetes import build_pod_manifest, find_claim_for_path

MODELS = CanaryModels("penguin", Path("/data/candidate"), Path("/data/baseline"))


def _spec(**platform) -> infra_validator_pb2.ServingSpec:
    spec = infra_validator_pb2.ServingSpec(model_name="penguin", **platform)
    spec.tensorflow_serving.tags.append("2.19.1")
    return spec


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_every_tag_and_digest_of_the_serving_spec_is_an_image_to_pass():
    """InfraValidator's serving_bins parse the spec: one image per tag and per digest."""
    assert serving_image(_spec()) == "tensorflow/serving:2.19.1"
    spec = infra_validator_pb2.ServingSpec(model_name="penguin")
    spec.tensorflow_serving.image_name = "registry.example:5000/serving"
    spec.tensorflow_serving.tags.extend(["2.19.1", "2.18.0-gpu"])
    spec.tensorflow_serving.digests.append(DIGEST)
    assert [b.image for b in serving_binaries_for("docker", spec)] == [
        "registry.example:5000/serving:2.19.1",
        "registry.example:5000/serving:2.18.0-gpu",
        f"registry.example:5000/serving@{DIGEST}",
    ]
    assert len(serving_binaries_for("kubernetes", spec)) == 3
    assert serving_binaries_for("embedded", spec) == [None]  # no image runs there


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("tags", "2.19.1@sha256:abc", "is not a Docker tag"),
        ("tags", "-latest", "is not a Docker tag"),
        ("digests", "sha256:abc", "is not an image digest"),
        ("digests", "2.19.1", "is not an image digest"),
        ("image_name", "TensorFlow/Serving", "is not a Docker repository name"),
        ("image_name", "tensorflow/serving:2.19.1", "is not a Docker repository name"),
    ],
)
def test_a_reference_docker_would_refuse_is_named_before_any_container_starts(
    field, value, message
):
    spec = _spec()
    if field == "image_name":
        spec.tensorflow_serving.image_name = value
    else:
        getattr(spec.tensorflow_serving, field).append(value)
    with pytest.raises(BackendError, match=message) as raised:
        serving_binaries_for("docker", spec)
    assert repr(value) in str(raised.value)


def test_a_spec_without_tag_or_digest_is_refused():
    with pytest.raises(BackendError, match="no tags or digests"):
        serving_image(infra_validator_pb2.ServingSpec())
    spec = infra_validator_pb2.ServingSpec()
    spec.tensorflow_serving.image_name = "tensorflow/serving"
    with pytest.raises(BackendError, match="no tags or digests"):
        serving_binaries_for("docker", spec)


def test_docker_container_spec_mounts_models_read_only_and_publishes_grpc_on_loopback():
    spec = build_container_spec(MODELS, "tensorflow/serving:2.19.1", "/tmp/x/models.config")
    assert spec["image"] == "tensorflow/serving:2.19.1"
    assert spec["command"] == ["--port=8500", "--model_config_file=/models/models.config"]
    assert spec["ports"] == {"8500/tcp": ("127.0.0.1", None)}
    # Removed by stop(), not auto-removed on exit: the log of a server that died stays readable.
    assert spec["detach"] and "auto_remove" not in spec
    mounts = {m["Target"]: m for m in spec["mounts"]}
    assert mounts["/models/penguin/1"]["Source"] == "/data/candidate"
    assert mounts["/models/penguin-baseline/1"]["Source"] == "/data/baseline"
    assert mounts["/models/models.config"]["Source"] == "/tmp/x/models.config"
    assert all(m["ReadOnly"] and m["Type"] == "bind" for m in spec["mounts"])
    config = container_config_text(MODELS)
    assert 'name: "penguin"\n    base_path: "/models/penguin"' in config
    assert 'base_path: "/models/penguin-baseline"' in config


def _executor_pod() -> k8s.V1Pod:
    return k8s.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k8s.V1ObjectMeta(name="pipeline-step-1", uid="uid-1"),
        spec=k8s.V1PodSpec(
            service_account_name="pipeline-runner",
            containers=[
                k8s.V1Container(
                    name="main",
                    volume_mounts=[
                        k8s.V1VolumeMount(name="root", mount_path="/pipeline"),
                        k8s.V1VolumeMount(name="scratch", mount_path="/scratch"),
                    ],
                )
            ],
            volumes=[
                k8s.V1Volume(
                    name="root",
                    persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                        claim_name="pipeline-root"
                    ),
                ),
                k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource()),
            ],
        ),
    )


def test_kubernetes_pod_follows_kubernetes_runner_semantics():
    pod = _executor_pod()
    mount, claim = find_claim_for_path(pod, "main", "/pipeline/tmp/canary/models/models.config")
    assert (mount.mount_path, claim) == ("/pipeline", "pipeline-root")
    config = infra_validator_pb2.KubernetesConfig(active_deadline_seconds=600)
    overrides = config.serving_pod_overrides
    overrides.annotations["sidecar.istio.io/inject"] = "false"
    overrides.env.add(name="TF_CPP_MIN_LOG_LEVEL", value="1")
    secret = overrides.env.add(name="TOKEN")
    secret.value_from.secret_key_ref.name = "serving"
    secret.value_from.secret_key_ref.key = "token"
    overrides.resources.requests["cpu"] = "2"
    overrides.resources.limits["memory"] = "4Gi"
    manifest = build_pod_manifest(
        image="tensorflow/serving:2.19.1",
        config_path="/pipeline/tmp/canary/models/models.config",
        kubernetes_config=config,
        executor_pod=pod,
        model_mount=mount,
        claim_name=claim,
    )
    assert manifest.metadata.generate_name == "tfx-serving-ext-canary-"
    assert manifest.metadata.annotations == {"sidecar.istio.io/inject": "false"}
    [owner] = manifest.metadata.owner_references
    assert (owner.name, owner.uid, owner.kind) == ("pipeline-step-1", "uid-1", "Pod")
    assert manifest.spec.restart_policy == "Never"
    assert manifest.spec.active_deadline_seconds == 600
    assert manifest.spec.service_account_name == "pipeline-runner"
    [volume] = manifest.spec.volumes
    assert volume.persistent_volume_claim.claim_name == "pipeline-root"
    assert volume.persistent_volume_claim.read_only
    [container] = manifest.spec.containers
    assert container.image == "tensorflow/serving:2.19.1"
    assert container.args == [
        "--port=8500",
        "--model_config_file=/pipeline/tmp/canary/models/models.config",
    ]
    [volume_mount] = container.volume_mounts
    assert volume_mount.mount_path == "/pipeline" and volume_mount.read_only
    env = {e.name: e for e in container.env}
    assert env["TF_CPP_MIN_LOG_LEVEL"].value == "1"
    assert env["TOKEN"].value_from.secret_key_ref.key == "token"
    assert container.resources.requests == {"cpu": "2"}
    assert container.resources.limits == {"memory": "4Gi"}
    # The serialized manifest is what the API server gets.
    body = k8s.ApiClient().sanitize_for_serialization(manifest)
    assert body["spec"]["containers"][0]["ports"] == [{"containerPort": 8500, "name": "grpc"}]


def test_kubernetes_refuses_a_model_on_a_volume_that_is_not_a_claim():
    with pytest.raises(BackendError, match="not a PersistentVolumeClaim"):
        find_claim_for_path(_executor_pod(), "main", "/scratch/model")
    assert find_claim_for_path(_executor_pod(), "main", "/elsewhere/model") is None
    with pytest.raises(BackendError, match="active_deadline_seconds"):
        build_pod_manifest(
            image="i",
            config_path="/c",
            kubernetes_config=infra_validator_pb2.KubernetesConfig(active_deadline_seconds=-1),
            executor_pod=_executor_pod(),
        )


def test_backend_choice_follows_the_serving_platform():
    assert choose_backend("auto", infra_validator_pb2.ServingSpec()) == "embedded"
    assert choose_backend("auto", _spec(kubernetes={})) == "kubernetes"
    unreachable = _spec(local_docker={"client_base_url": "unix:///nonexistent/docker.sock"})
    assert choose_backend("auto", unreachable) == "embedded"
    assert choose_backend("docker", unreachable) == "docker"
    with pytest.raises(BackendError, match="unknown canary backend"):
        choose_backend("podman")


def _canary_in_engine(engine, image, candidate, baseline, records, output_dir, **kwargs) -> dict:
    return engine.call_in_netns(
        "docker_canary",
        candidate_dir=str(candidate),
        baseline_dir=str(baseline) if baseline else None,
        examples_b64=[base64.b64encode(r).decode() for r in records],
        output_dir=str(output_dir),
        image_repository=image.repository,
        image_tag=image.tag,
        timeout=600,
        **kwargs,
    )


def test_live_docker_canary_blesses_the_penguin(
    docker_engine, tf_serving_image, penguin_model_dir, penguin_records, tmp_path
):
    """Candidate and baseline served by TF Serving in a container of a real Docker engine."""
    result = _canary_in_engine(
        docker_engine,
        tf_serving_image,
        penguin_model_dir,
        penguin_model_dir,
        penguin_records,
        tmp_path,
    )
    assert result["blessed"], result["report"].get("verdict")
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.html").exists()
    # What ran is recorded: the image and its content address (a locally built stand-in has no
    # repository digest; tests/containers/test_canary_image_digest.py pushes one that has).
    server = result["report"]["server"]
    assert server["tf_serving"] and server["image"] == tf_serving_image.reference
    assert server["image_id"].startswith("sha256:")
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}


def test_live_docker_canary_refuses_a_model_that_fails_to_load_with_the_servers_log(
    docker_engine, tf_serving_image, canary_models, penguin_model_dir, penguin_records, tmp_path
):
    result = _canary_in_engine(
        docker_engine,
        tf_serving_image,
        canary_models["broken"],
        penguin_model_dir,
        penguin_records,
        tmp_path,
        max_loading_seconds=120,
    )
    assert not result["blessed"]
    report = result["report"]
    assert report.get("server_log_tail"), sorted(report)
    # The server's own words about the model it could not load, not just "it did not come up".
    assert "penguin" in report["server_log_tail"]
    assert (tmp_path / "server.log").read_text()
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}


def test_live_docker_backend_is_running_only_once_the_model_server_answers(
    docker_engine, tf_serving_image, penguin_model_dir
):
    """docker-proxy accepts TCP as soon as the container starts; the server answers seconds
    later. `wait_until_running` must wait for the server (a gRPC answer), and its timings must
    separate the container's start from the server's."""
    seen = docker_engine.call_in_netns(
        "docker_backend_readiness",
        model_dir=str(penguin_model_dir),
        image_repository=tf_serving_image.repository,
        image_tag=tf_serving_image.tag,
        timeout=400,
    )
    assert seen["first_call"] in ("OK", "NOT_FOUND"), seen
    timings = seen["timings"]
    assert 0 < timings["container_start_seconds"] <= timings["server_start_seconds"], seen
    assert seen["available_seconds"] is not None, seen
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}


def test_live_docker_sigterm_to_the_canary_stops_its_container(
    docker_engine, tf_serving_image, canary_models, penguin_records, tmp_path
):
    """The platform stops a canary with SIGTERM: its container must go with it."""
    import signal
    import time

    from tfx_serving_ext.canary.backends.docker import LABEL

    kwargs = {
        "candidate_dir": str(canary_models["slow"]),
        "baseline_dir": None,
        "examples_b64": [base64.b64encode(r).decode() for r in penguin_records],
        "output_dir": str(tmp_path),
        "image_repository": tf_serving_image.repository,
        "image_tag": tf_serving_image.tag,
        "num_requests": 5000,
    }
    proc = docker_engine.popen_in_netns("docker_canary", tmp_path / "result.json", **kwargs)
    client = docker_engine.client()
    try:
        deadline = time.monotonic() + 300
        while not client.containers.list(filters={"label": LABEL, "status": "running"}):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the canary's container never ran"
            time.sleep(0.5)
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        client.close()
    assert proc.returncode != 0, output[-3000:]
    assert not (tmp_path / "result.json").exists()
    assert leftovers(docker_engine) == {"containers": [], "networks": [], "volumes": []}
