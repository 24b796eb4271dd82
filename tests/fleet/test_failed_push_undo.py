"""A failed push leaves the serving volume and the model config as they were."""

from __future__ import annotations

import pytest

from tests.fleet.conftest import CONFIG_TEXT, MODEL, newest_available
from tests.fleet.test_label_canary import canary_push, routed
from tfx_serving_ext.protocol import model_config
from tfx_serving_ext.protocol.versions import list_versions
from tfx_serving_ext.publish import labels as labels_module
from tfx_serving_ext.publish import progressive, volume
from tfx_serving_ext.publish.labels import LabelNotRouted
from tfx_serving_ext.publish.push import push_to_volume

STABLE_ON_1 = {"labels": {"stable": 1}}


def assert_back_on(fleet, version: int) -> None:
    assert [newest_available(a) for a in fleet.grpc] == [version] * 3


@pytest.mark.parametrize("fleet", [STABLE_ON_1], indirect=True)
def test_an_exception_after_publishing_undoes_the_push_and_goes_on(
    fleet, fleet_models, monkeypatch
):
    def broken_scrape(*args, **kwargs):
        raise ValueError("metrics scrape: could not parse line 3")

    monkeypatch.setattr(progressive, "watch_new_version", broken_scrape)
    with pytest.raises(ValueError, match="could not parse"):
        push_to_volume(fleet_models.good, canary_push(fleet))
    assert sorted(list_versions(fleet.base)) == [1]
    assert model_config.read_version_labels(fleet.config_file, MODEL) == {
        "canary": 1,
        "stable": 1,
    }
    assert routed(fleet.grpc, "stable") == [1, 1, 1]
    assert_back_on(fleet, 1)


@pytest.mark.parametrize("fleet", [STABLE_ON_1], indirect=True)
def test_a_stable_label_that_fails_to_route_is_not_left_on_the_removed_version(
    fleet, fleet_models, monkeypatch
):
    real_wait = labels_module.wait_until_routed

    def stable_never_routes(fleet_, model_name, labels, timeout):
        if labels.get("stable") == 2:
            raise LabelNotRouted("replica x still answers label 'stable' with version 1")
        return real_wait(fleet_, model_name, labels, timeout)

    monkeypatch.setattr(labels_module, "wait_until_routed", stable_never_routes)
    result = push_to_volume(fleet_models.good, canary_push(fleet, watch_seconds=0))
    assert (result.pushed, result.rolled_back) == (False, True)
    assert sorted(list_versions(fleet.base)) == [1]
    labels = model_config.read_version_labels(fleet.config_file, MODEL)
    assert labels == {"canary": 1, "stable": 1}
    assert routed(fleet.grpc, "stable") == [1, 1, 1]
    assert_back_on(fleet, 1)


@pytest.mark.parametrize("fleet", [STABLE_ON_1], indirect=True)
def test_a_version_that_fails_to_load_leaves_the_model_config_untouched(fleet, fleet_models):
    text_before = fleet.config_file.read_text()
    result = push_to_volume(fleet_models.faulty_on_strict_replica, canary_push(fleet))
    assert (result.pushed, result.rolled_back) == (False, True)
    assert fleet.config_file.read_text() == text_before
    assert sorted(list_versions(fleet.base)) == [1]


def test_rollback_waits_for_the_previous_version_not_an_older_stable_one(fleet, fleet_models):
    # Three versions kept loaded, so a stable label can stay on 1 while 2 serves.
    fleet.config_file.write_text(
        CONFIG_TEXT.format(
            name=MODEL, base=fleet.base, labels='version_labels { key: "stable" value: 1 } '
        ).replace("num_versions: 2", "num_versions: 3")
    )
    volume.publish_version(fleet_models.good, fleet.base)
    from tfx_serving_ext.client.client import ServingClient

    for address in fleet.grpc:
        with ServingClient(address) as client:
            client.wait_until_available(MODEL, version=2, timeout=60)
    assert routed(fleet.grpc, "stable") == [1, 1, 1]
    result = push_to_volume(
        fleet_models.errors_on_traffic,
        canary_push(fleet, watch_seconds=20, verify_timeout_seconds=20),
    )
    assert (result.pushed, result.rolled_back) == (False, True)
    assert "every replica serves version 2 again" in result.message
    assert model_config.read_version_labels(fleet.config_file, MODEL) == {
        "canary": 1,
        "stable": 1,
    }
    assert_back_on(fleet, 2)
