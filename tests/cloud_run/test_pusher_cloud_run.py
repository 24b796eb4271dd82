"""ServingPusher's `cloud_run` destination: the executor records image, revision and URLs.

The image goes to a real docker-registry on loopback; the Cloud Run Admin API is the local
stand-in in `fake_run_api` (Google's API cannot be reached from here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tfx.types import standard_artifacts

from tests.cloud_run.conftest import push_base_image
from tests.cloud_run.fake_run_api import start_fake_run_api
from tfx_serving_ext.components.serving_pusher import ServingPusher, executor


@pytest.fixture
def pusher_run(local_registry, tiny_saved_model, tmp_path):
    base = push_base_image(local_registry, "base/pusher", "1")
    api, server = start_fake_run_api()
    model = standard_artifacts.Model()
    model.uri = str(tiny_saved_model)
    runs = iter(range(100))

    def run(**overrides):
        settings = {
            "image_repository": f"{local_registry.host}/models/pusher",
            "base_image": base.reference,
            "project": "proj",
            "region": "us-central1",
            "service": "penguin",
            "model_name": "penguin",
            "traffic_percent": 10,
            "api_endpoint": api.endpoint,
            "operation_timeout_s": 5,
            **overrides,
        }
        pushed = standard_artifacts.PushedModel()
        pushed.uri = str(tmp_path / "pushed" / str(next(runs)))
        Path(pushed.uri).mkdir(parents=True)
        props = {"destination": "cloud_run", "push_destination": json.dumps(settings)}
        executor.Executor().Do({"model": [model]}, {"pushed_model": [pushed]}, props)
        return pushed

    run.api = api
    try:
        yield run
    finally:
        server.shutdown()
        server.server_close()


def test_pushed_model_records_image_revision_and_urls(pusher_run):
    first = pusher_run(model_version=1)
    second = pusher_run(model_version=2)
    for pushed in (first, second):
        assert pushed.get_int_custom_property("pushed") == 1
    digest = second.get_string_custom_property("image_digest")
    assert digest.startswith("sha256:")
    assert second.get_string_custom_property("image").endswith(f"/models/pusher@{digest}")
    assert second.get_string_custom_property("pushed_version") == "2"
    revision = second.get_string_custom_property("revision_name")
    assert revision == f"penguin-v2-{digest[7:15]}"
    assert second.get_string_custom_property("service_url") == "https://penguin-abc123-uc.a.run.app"
    tag_url = "https://canary---penguin-abc123-uc.a.run.app"
    assert second.get_string_custom_property("tag_url") == tag_url
    assert second.get_string_custom_property("pushed_destination") == tag_url
    assert second.get_string_custom_property("verification") == "available"
    traffic = json.loads(second.get_string_custom_property("traffic"))
    assert [(t["revision"], t["percent"]) for t in traffic] == [
        (revision, 10),
        (first.get_string_custom_property("revision_name"), 90),
    ]
    assert (Path(second.uri) / "saved_model.pb").is_file()


def test_api_error_records_pushed_0_with_the_error(pusher_run):
    pusher_run.api.fail_next = (403, "PERMISSION_DENIED", "caller lacks run.services.create")
    pushed = pusher_run(model_version=1)
    assert pushed.get_int_custom_property("pushed") == 0
    assert "run.services.create" in pushed.get_string_custom_property("verification_message")
    assert pushed.get_string_custom_property("verification") == "error"
    assert not (Path(pushed.uri) / "saved_model.pb").exists()


def test_timed_out_operation_records_pushed_0(pusher_run):
    pusher_run.api.never_finish = True
    pushed = pusher_run(model_version=1, operation_timeout_s=1)
    assert pushed.get_int_custom_property("pushed") == 0
    assert pushed.get_string_custom_property("verification") == "timeout"
    assert "DeployTimeout" in pushed.get_string_custom_property("verification_message")


def test_component_validates_cloud_run_settings_at_construction():
    from tfx.types import channel_utils

    model = channel_utils.as_channel([standard_artifacts.Model()])
    with pytest.raises(ValueError, match="traffic_percent"):
        ServingPusher(
            model=model,
            destination="cloud_run",
            push_destination={
                "image_repository": "r/p",
                "project": "p",
                "region": "r",
                "service": "s",
                "traffic_percent": 150,
            },
        )
    pusher = ServingPusher(
        model=model,
        destination="cloud_run",
        push_destination={"image_repository": "r/p", "project": "p", "region": "r", "service": "s"},
    )
    assert json.loads(pusher.exec_properties["push_destination"])["service"] == "s"
