"""Cloud Run deployment through the real `run_v2.ServicesClient`, against a local stand-in.

Google's Cloud Run Admin API cannot be reached from here (no network, no credentials), so the
client (REST transport, anonymous credentials) talks to `fake_run_api`, a loopback HTTP server
that implements services get/create/patch and long-running operations. The image half is real:
it is built and pushed to a real docker-registry on loopback.
"""

from __future__ import annotations

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials

from tests.cloud_run.conftest import push_base_image
from tests.cloud_run.fake_run_api import start_fake_run_api
from tfx_serving_ext.cloud_run.config import CloudRunConfig, CloudRunConfigError
from tfx_serving_ext.cloud_run.deploy import CloudRunDeployer, revision_name
from tfx_serving_ext.cloud_run.errors import DeployError, DeployTimeout
from tfx_serving_ext.cloud_run.knative import knative_service
from tfx_serving_ext.cloud_run.push import push_to_cloud_run

IMAGE = "127.0.0.1:5000/models/penguin@sha256:" + "a" * 64


@pytest.fixture
def run_api():
    api, server = start_fake_run_api()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def _config(api, **overrides) -> CloudRunConfig:
    values = dict(
        image_repository="127.0.0.1:5000/models/penguin",
        project="proj",
        region="us-central1",
        service="penguin",
        model_name="penguin",
        traffic_percent=10,
        api_endpoint=api.endpoint,
        operation_timeout_s=5,
        cpu="1",
        memory="2Gi",
        concurrency=8,
        max_instances=3,
    )
    values.update(overrides)
    return CloudRunConfig(**values)


def _deployer(config: CloudRunConfig) -> CloudRunDeployer:
    return CloudRunDeployer.from_config(config, credentials=AnonymousCredentials())


def _traffic(request) -> list[tuple[str, int, str]]:
    return [(t["revision"], t.get("percent", 0), t.get("tag", "")) for t in request.body["traffic"]]


def test_create_canary_promote_rollback_sequence(run_api):
    config = _config(run_api)
    deployer = _deployer(config)

    first = deployer.deploy_revision(config, IMAGE, "penguin-v1-aaaaaaaa")
    second = deployer.deploy_revision(
        config, IMAGE.replace("a" * 64, "b" * 64), "penguin-v2-bbbbbbbb"
    )
    promoted = deployer.promote("penguin")
    rolled_back = deployer.rollback("penguin")

    create, canary, promote, rollback = run_api.mutations()
    assert (create.method, create.query["serviceId"]) == ("POST", ["penguin"])
    assert create.path == "/v2/projects/proj/locations/us-central1/services"
    assert _traffic(create) == [("penguin-v1-aaaaaaaa", 100, "canary")]
    # The revision runs the image by digest, with the probe, resources and scaling asked for.
    template = create.body["template"]
    assert template["revision"] == "penguin-v1-aaaaaaaa"
    assert template["maxInstanceRequestConcurrency"] == 8
    assert template["scaling"]["maxInstanceCount"] == 3
    container = template["containers"][0]
    assert container["image"] == IMAGE
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert container["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert container["startupProbe"]["httpGet"] == {"path": "/v1/models/penguin", "port": 8080}

    assert canary.method == "PATCH"
    assert canary.body["template"]["revision"] == "penguin-v2-bbbbbbbb"
    assert _traffic(canary) == [
        ("penguin-v2-bbbbbbbb", 10, "canary"),
        ("penguin-v1-aaaaaaaa", 90, ""),
    ]
    assert "template" not in promote.body or promote.body["template"]["revision"] == (
        "penguin-v2-bbbbbbbb"
    )
    assert _traffic(promote) == [
        ("penguin-v2-bbbbbbbb", 100, "canary"),
        ("penguin-v1-aaaaaaaa", 0, "previous"),
    ]
    assert _traffic(rollback) == [
        ("penguin-v1-aaaaaaaa", 100, ""),
        ("penguin-v2-bbbbbbbb", 0, "canary"),
    ]

    assert first.service_url == "https://penguin-abc123-uc.a.run.app"
    assert second.tag_url == "https://canary---penguin-abc123-uc.a.run.app"
    assert promoted.revision == "penguin-v2-bbbbbbbb"
    assert rolled_back.revision == "penguin-v1-aaaaaaaa"
    assert [(t.revision, t.percent) for t in rolled_back.traffic][0] == ("penguin-v1-aaaaaaaa", 100)


def test_zero_percent_canary_is_reachable_only_at_its_tag(run_api):
    config = _config(run_api, traffic_percent=0)
    deployer = _deployer(config)
    deployer.deploy_revision(config, IMAGE, "penguin-v1-aaaaaaaa")
    result = deployer.deploy_revision(config, IMAGE, "penguin-v2-bbbbbbbb")
    assert _traffic(run_api.mutations()[-1]) == [
        ("penguin-v2-bbbbbbbb", 0, "canary"),
        ("penguin-v1-aaaaaaaa", 100, ""),
    ]
    assert result.tag_url == "https://canary---penguin-abc123-uc.a.run.app"
    with pytest.raises(DeployError, match="takes no traffic"):
        deployer.rollback("penguin")


def test_api_error_is_a_clear_deploy_error(run_api):
    config = _config(run_api)
    run_api.fail_next = (403, "PERMISSION_DENIED", "caller lacks run.services.create")
    with pytest.raises(DeployError, match="run.services.create"):
        _deployer(config).deploy_revision(config, IMAGE, "penguin-v1-aaaaaaaa")


def test_failed_operation_is_a_clear_deploy_error(run_api):
    config = _config(run_api)
    run_api.operation_error = {"code": 9, "message": "Revision failed its startup probe"}
    with pytest.raises(DeployError, match="startup probe"):
        _deployer(config).deploy_revision(config, IMAGE, "penguin-v1-aaaaaaaa")


def test_operation_that_never_finishes_times_out(run_api):
    config = _config(run_api, operation_timeout_s=1.5)
    run_api.never_finish = True
    with pytest.raises(DeployTimeout, match=r"within 2 s .*operation projects/proj"):
        _deployer(config).deploy_revision(config, IMAGE, "penguin-v1-aaaaaaaa")


def test_mutable_tag_is_refused(run_api):
    config = _config(run_api)
    with pytest.raises(DeployError, match="by digest"):
        _deployer(config).deploy_revision(config, "example.com/p/r:latest", "penguin-v1")
    assert run_api.requests == []


def test_promote_without_service_or_canary_fails_clearly(run_api):
    config = _config(run_api)
    with pytest.raises(DeployError, match="does not exist"):
        _deployer(config).promote("penguin")


def test_knative_manifest_structure():
    config = CloudRunConfig(
        image_repository="r.example/p/m",
        service="penguin",
        model_name="penguin",
        mode="knative",
        knative_manifest_path="/tmp/unused.yaml",
        traffic_percent=25,
        previous_revision="penguin-v1-aaaaaaaa",
        knative_namespace="models",
        server_args=["--enable_batching"],
    )
    manifest = yaml.safe_load(yaml.safe_dump(knative_service(config, IMAGE, "penguin-v2-bb")))
    assert manifest["apiVersion"] == "serving.knative.dev/v1"
    assert manifest["kind"] == "Service"
    assert manifest["metadata"] == {"name": "penguin", "namespace": "models"}
    template = manifest["spec"]["template"]
    assert template["metadata"]["name"] == "penguin-v2-bb"
    container = template["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["args"] == ["--enable_batching"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/penguin"
    assert template["spec"]["containerConcurrency"] == 80
    assert manifest["spec"]["traffic"] == [
        {"revisionName": "penguin-v2-bb", "percent": 25, "latestRevision": False, "tag": "canary"},
        {"revisionName": "penguin-v1-aaaaaaaa", "percent": 75, "latestRevision": False},
    ]


def test_config_validation_and_json_round_trip():
    config = CloudRunConfig(
        image_repository="r.example/p/m", project="p", region="r", service="svc", env={"A": "1"}
    )
    assert CloudRunConfig.from_json(config.to_json()) == config
    with pytest.raises(CloudRunConfigError, match="traffic_percent"):
        CloudRunConfig(
            image_repository="r/p", project="p", region="r", service="s", traffic_percent=101
        )
    with pytest.raises(CloudRunConfigError, match="Unknown Cloud Run settings"):
        CloudRunConfig.from_json('{"image_repository": "r/p", "trafic_percent": 5}')
    with pytest.raises(CloudRunConfigError, match="project and region"):
        CloudRunConfig(image_repository="r/p", service="s")
    assert revision_name("svc", 12, "sha256:" + "c" * 64) == "svc-v12-cccccccc"


def test_push_to_cloud_run_builds_pushes_and_deploys(
    run_api, local_registry, tiny_saved_model, tmp_path
):
    base = push_base_image(local_registry, "base/deploy", "1")
    config = _config(
        run_api,
        image_repository=f"{local_registry.host}/models/deployed",
        base_image=base.reference,
        model_version=5,
    )
    result = push_to_cloud_run(tiny_saved_model, config, deployer=_deployer(config))
    assert result.image == f"{local_registry.host}/models/deployed@{result.image_digest}"
    assert result.revision == revision_name("penguin", 5, result.image_digest)
    (create,) = run_api.mutations()
    assert create.body["template"]["containers"][0]["image"] == result.image
    assert result.service_url == "https://penguin-abc123-uc.a.run.app"
    assert result.tag_url == "https://canary---penguin-abc123-uc.a.run.app"

    knative = CloudRunConfig.from_dict(
        {
            **CloudRunConfig.from_json(config.to_json()).__dict__,
            "mode": "knative",
            "knative_manifest_path": str(tmp_path / "penguin.yaml"),
        }
    )
    manifest_result = push_to_cloud_run(tiny_saved_model, knative)
    assert manifest_result.image_digest == result.image_digest  # same model, same image
    manifest = yaml.safe_load((tmp_path / "penguin.yaml").read_text())
    assert manifest["spec"]["template"]["metadata"]["name"] == result.revision
    assert len(run_api.mutations()) == 1  # the Knative mode never calls Cloud Run
